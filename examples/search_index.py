"""Real-time search index building: a product-update stream kept in a SQLite FTS5 index, exactly once.

A seeded generator produces inserts, updates and deletes of products (id, title, description,
price), each with a version number that grows per product; the stream is a little out of order, so
an older update of a product may arrive after a newer one. A keyed step (``latest-version``) keeps
each product's highest version seen in keyed state and passes on only changes newer than it: a
stale update or delete is dropped, and a product deleted at version 5 is not brought back by its
version 4 arriving late. The changes then go into a full-text index, an FTS5 table of the standard
library's ``sqlite3`` (one row per product, the product id as its rowid: an update replaces the
row, a delete removes it), and ``GET /search?q=...`` answers with the matching products (aiohttp,
the ``web`` extra).

The index changes exactly once, with the checkpoints (:class:`SearchIndexSink`, a two-phase-commit
sink). The design, and why:

- A *transaction* is one checkpoint interval's changes, kept in memory (a list): SQLite allows one
  writer at a time, so an open SQLite transaction held across the interval would block the commit
  of the previous checkpoint, which happens while the next interval is being written.
- *Pre-commit* (at the checkpoint's barrier) writes the interval's changes into a staging table,
  ``staged``, under a transaction id, in one SQLite transaction, durable on return (WAL,
  ``synchronous=FULL``). Nothing a reader sees has changed; the handle put in the checkpoint is the
  id. This is how a pre-committed transaction survives a crash: it is rows in the database file.
- *Commit* (the checkpoint completed) applies the staged rows of that id to the FTS table, deletes
  them and records the id as ``last_applied``, all in one SQLite transaction: a crash leaves either
  all of it or none. It is idempotent: an id not above ``last_applied`` was applied already, and
  a restored checkpoint's handles being committed again changes nothing.
- *Restore*: the restored handles are committed (again), then every other staged row, left by a
  checkpoint that never completed, is deleted (its changes are replayed from the source).
  Transaction ids keep growing across restarts (the next one is above everything the database has
  seen), so a new transaction is never mistaken for an applied one. A fresh start (no checkpoint to
  restore) empties the index, since the source starts again from its first update.

Why a staging table rather than keeping the changes in the checkpoint itself: the checkpoint then
holds a small handle, and a commit that a crash cut short (rolled back by SQLite) is redone on
restore from rows the database already holds. The sink holds a connection while it runs; a
checkpoint that completes after the sink was closed (its input had ended) is committed on a
connection of its own. Readers see the index as of the last completed checkpoint: whole
intervals, never a half-applied one.

Run it (the index is served while the updates stream in, and afterwards until Ctrl-C)::

    python3 examples/search_index.py --db /tmp/products.sqlite --port 8082
    curl '127.0.0.1:8082/search?q=red+lamp'

``--checkpoint-dir DIR`` takes checkpoints there (every ``--checkpoint-interval-ms``, 1 s by
default) and resumes from them after a crash; without it the index commits once, at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from actorflow import (
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    RuntimeContext,
    Source,
    ValueState,
    ValueStateDescriptor,
)
from actorflow.operators.base import OperatorContext
from actorflow.operators.sources import ReadProgress
from actorflow.operators.two_phase import TwoPhaseCommitSink

try:
    from aiohttp import web
except ImportError:  # pragma: no cover - the web extra is in the dev extra
    raise SystemExit("examples/search_index.py needs aiohttp: pip install 'actorflow[web]'") from None

__all__ = [
    "ProductUpdates",
    "SearchIndexSink",
    "LatestVersion",
    "build",
    "catalogue",
    "main",
    "search",
    "search_app",
    "updates",
]

COLOURS = ["red", "blue", "green", "black", "white", "yellow", "grey", "orange"]
MATERIALS = ["wooden", "steel", "cotton", "leather", "glass", "ceramic", "bamboo", "wool"]
THINGS = ["lamp", "chair", "table", "mug", "scarf", "backpack", "shelf", "kettle", "rug", "vase"]
WORDS = [
    "handmade", "durable", "light", "compact", "classic", "modern", "soft", "sturdy", "elegant",
    "washable", "foldable", "vintage", "minimal", "warm", "bright", "quiet", "portable", "rustic",
]  # fmt: skip


# -- the input ------------------------------------------------------------------------------------


def updates(seed: int = 11, count: int = 5_000, products: int = 300) -> list[dict[str, Any]]:
    """``count`` product updates in arrival order: ``op`` (``"upsert"`` or ``"delete"``), ``id``,
    ``version`` (1, 2, ... per product) and, for an upsert, ``title``, ``description``, ``price``.
    About one in eight arrives a few places late; products are often edited in bursts, so some
    updates of a product arrive out of order.

    >>> [(u["op"], u["id"], u["version"]) for u in updates(seed=1, count=2, products=5)]
    [('upsert', 1, 2), ('upsert', 1, 1)]
    """
    rng = random.Random(seed)
    versions = [0] * products
    alive = [False] * products
    made: list[dict[str, Any]] = []
    recent: list[int] = []
    for _ in range(count):
        # Edits come in bursts: often a product changed a moment ago changes again.
        product = rng.choice(recent) if recent and rng.random() < 0.3 else rng.randrange(products)
        recent = [*recent[-4:], product]
        versions[product] += 1
        update: dict[str, Any] = {"id": product, "version": versions[product]}
        if alive[product] and rng.random() < 0.15:
            update["op"] = "delete"
            alive[product] = False
        else:
            alive[product] = True
            words = rng.sample(WORDS, rng.randint(3, 6))
            update |= {
                "op": "upsert",
                "title": f"{rng.choice(COLOURS).title()} {rng.choice(MATERIALS)} {rng.choice(THINGS)}",
                "description": " ".join(words).capitalize() + ".",
                "price": round(rng.uniform(2.0, 400.0), 2),
            }
        made.append(update)
    # Arrival order: most updates on time, some delayed by up to a few places.
    arrival = [
        i + (rng.randint(1, 6) if rng.random() < 0.125 else 0) + 0.5 * rng.random() for i in range(count)
    ]
    return [update for _, update in sorted(zip(arrival, made, strict=True), key=lambda pair: pair[0])]


def catalogue(stream: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The products that exist after ``stream``: per id, its highest version, unless that deletes it.

    >>> catalogue([{"op": "upsert", "id": 1, "version": 2, "title": "b"},
    ...            {"op": "upsert", "id": 1, "version": 1, "title": "a"}])[1]["title"]
    'b'
    """
    newest: dict[int, dict[str, Any]] = {}
    for update in stream:
        if update["id"] not in newest or update["version"] > newest[update["id"]]["version"]:
            newest[update["id"]] = update
    return {product: update for product, update in newest.items() if update["op"] == "upsert"}


class ProductUpdates(Source):
    """:func:`updates` as a source (one instance): ``rate`` per second (None: as fast as taken).
    Its checkpointed position is how many updates went out; a restore regenerates and skips them."""

    def __init__(
        self, *, seed: int = 11, count: int = 5_000, products: int = 300, rate: float | None = None
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"ProductUpdates: rate must be positive (or None for no limit), not {rate}")
        self.seed, self.count, self.products, self.rate = seed, count, products, rate
        self._emitted = 0
        self._start = 0

    def snapshot_state(self, context: OperatorContext) -> int:
        return self._emitted

    def restore_state(self, context: OperatorContext, states: list[Any]) -> None:
        self._start = max(states, default=0)

    def read_progress(self) -> ReadProgress | None:
        return ReadProgress(self._emitted, self.count)

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        clock = context.clock
        started = clock.now()
        stream = updates(self.seed, self.count, self.products)
        self._emitted = self._start
        size = (
            context.batch_size
            if self.rate is None
            else max(1, min(context.batch_size, int(self.rate / 20)))
        )
        while self._emitted < len(stream):
            batch = stream[self._emitted : self._emitted + size]
            self._emitted += len(batch)
            yield batch
            if self.rate is None:
                await asyncio.sleep(0)
            else:
                await clock.sleep_until(started + int((self._emitted - self._start) * 1000 / self.rate))


# -- the keyed step -------------------------------------------------------------------------------


class LatestVersion(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per product id: passes an update on only if its version is above every version seen (deletes
    included), so that out-of-order updates resolve to the newest."""

    def open(self, ctx: RuntimeContext) -> None:
        self.seen: ValueState[int] = ctx.get_state(ValueStateDescriptor("version", default=0))

    def process_element(self, update: dict[str, Any], ctx: Context, out: Collector) -> None:
        version = update.get("version")
        if not isinstance(version, int) or update.get("op") not in ("upsert", "delete"):
            raise ValueError(
                f"latest-version: an update needs an integer version and op upsert/delete: {update}"
            )
        if update["op"] == "upsert" and not (
            isinstance(update.get("title"), str)
            and isinstance(update.get("description"), str)
            and isinstance(update.get("price"), int | float)
        ):
            raise ValueError(
                f"latest-version: an upsert needs a title, a description and a price: {update}"
            )
        if version > self.seen.value():
            self.seen.update(version)
            out.collect(update)


# -- the index: a two-phase-commit sink -----------------------------------------------------------

SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS products USING fts5(
    title, description, price UNINDEXED, version UNINDEXED
);
CREATE TABLE IF NOT EXISTS staged (
    txn INTEGER NOT NULL, seq INTEGER NOT NULL, change BLOB NOT NULL, PRIMARY KEY (txn, seq)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, txn INTEGER NOT NULL, id INTEGER NOT NULL,
    version INTEGER NOT NULL, op TEXT NOT NULL
);
"""
"""``products``: the index (rowid = product id). ``staged``: pre-committed changes per transaction.
``meta``: ``last_applied``, the newest transaction applied. ``journal``: every applied change, when
the sink keeps one (the crash test counts on it to see that no change is applied twice)."""


@dataclass
class _Changes:
    txn: int
    changes: list[dict[str, Any]] = field(default_factory=list)


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection to the index at ``path`` (created if missing), in WAL mode, durable commits."""
    connection = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(SCHEMA)
    return connection


def last_applied(connection: sqlite3.Connection) -> int:
    """The id of the newest transaction applied to the index (0: none)."""
    row = connection.execute("SELECT value FROM meta WHERE key = 'last_applied'").fetchone()
    return int(row[0]) if row else 0


class SearchIndexSink(TwoPhaseCommitSink[_Changes, int]):
    """Keeps the FTS5 index at ``path`` exactly once (see the module docstring); ``journal`` also
    records every change applied. One instance (SQLite has one writer)."""

    max_parallelism = 1

    def __init__(self, path: str | os.PathLike[str], *, journal: bool = False) -> None:
        super().__init__("search-index")
        self.path = Path(path)
        self.journal = journal

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db: sqlite3.Connection | None = connect(self.path)
        self._next_txn = 1
        self._clean = False

    def close(self) -> None:
        super().close()
        if self._db is not None:
            self._db.close()
            self._db = None

    def begin(self) -> _Changes:
        if not self._clean:  # a fresh start: the source starts again, so the index does too
            with self._transaction() as db:
                db.execute("DELETE FROM products")
                db.execute("DELETE FROM staged")
                db.execute("DELETE FROM journal")
                db.execute("DELETE FROM meta")
            self._clean = True
        txn, self._next_txn = self._next_txn, self._next_txn + 1
        return _Changes(txn)

    def write_to(self, txn: _Changes, values: list[Any]) -> None:
        txn.changes.extend(values)

    def pre_commit(self, txn: _Changes) -> int | None:
        if not txn.changes:
            return None
        rows = [(txn.txn, seq, orjson.dumps(change)) for seq, change in enumerate(txn.changes)]
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO staged (txn, seq, change) VALUES (?, ?, ?)", rows)
        return txn.txn

    def commit(self, handle: int) -> None:
        with self._transaction() as db:
            if handle > last_applied(db):
                changes = db.execute("SELECT change FROM staged WHERE txn = ? ORDER BY seq", (handle,))
                for (raw,) in changes.fetchall():
                    self._apply(db, handle, orjson.loads(raw))
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_applied', ?)", (handle,))
            db.execute("DELETE FROM staged WHERE txn = ?", (handle,))

    def abort(self, txn: _Changes) -> None:
        txn.changes.clear()  # never written anywhere

    def sink_state(self) -> dict[str, Any]:
        return {"next_txn": self._next_txn}

    def abort_leftovers(self, recovered: list[int], state: dict[str, Any] | None) -> None:
        # The recovered handles are committed (their rows are gone); what is still staged belongs
        # to checkpoints that never completed.
        with self._transaction() as db:
            newest_staged = db.execute("SELECT COALESCE(MAX(txn), 0) FROM staged").fetchone()[0]
            db.execute("DELETE FROM staged")
            applied = last_applied(db)
        known = state["next_txn"] if state is not None else 1
        self._next_txn = max(self._next_txn, known, applied + 1, newest_staged + 1)
        self._clean = True

    def _apply(self, db: sqlite3.Connection, txn: int, change: dict[str, Any]) -> None:
        product = change["id"]
        db.execute("DELETE FROM products WHERE rowid = ?", (product,))
        if change["op"] == "upsert":
            db.execute(
                "INSERT INTO products (rowid, title, description, price, version) VALUES (?, ?, ?, ?, ?)",
                (product, change["title"], change["description"], change["price"], change["version"]),
            )
        if self.journal:
            db.execute(
                "INSERT INTO journal (txn, id, version, op) VALUES (?, ?, ?, ?)",
                (txn, product, change["version"], change["op"]),
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT around the block (ROLLBACK if it raises). After :meth:`close`
        on a connection of its own: the commit of a checkpoint that completes after the sink's
        input ended comes after ``close`` (see the module docstring)."""
        temporary = self._db is None
        db = connect(self.path) if self._db is None else self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if temporary:
                db.close()


def build(
    db: str | os.PathLike[str],
    *,
    seed: int = 11,
    count: int = 5_000,
    products: int = 300,
    rate: float | None = None,
    journal: bool = False,
) -> Flow:
    """The flow: generated product updates, the newest version per product, the index at ``db``."""
    flow = Flow("search-index")
    (
        flow.from_source(
            ProductUpdates(seed=seed, count=count, products=products, rate=rate), name="product-updates"
        )
        .key_by("id")
        .process(LatestVersion(), name="latest-version")
        .sink(SearchIndexSink(db, journal=journal), name="search-index")
    )
    return flow


# -- queries --------------------------------------------------------------------------------------


def documents(db: str | os.PathLike[str]) -> list[tuple[int, str, str, float, int]]:
    """Every indexed product, by id: (id, title, description, price, version)."""
    with _reader(db) as connection:
        rows = connection.execute(
            "SELECT rowid, title, description, price, version FROM products ORDER BY rowid"
        ).fetchall()
    return [tuple(row) for row in rows]


def search(db: str | os.PathLike[str], query: str, limit: int = 20) -> list[dict[str, Any]]:
    """The products whose title or description hold every word of ``query``, best match first.

    Words are letters and digits (anything else separates them), matched whole and ignoring case;
    a query without any word matches nothing.
    """
    words = re.findall(r"\w+", query.lower())
    if not words:
        return []
    expression = " ".join(f'"{word}"' for word in words)  # quoted: FTS5 syntax in a query is text
    with _reader(db) as connection:
        rows = connection.execute(
            "SELECT rowid, title, price FROM products WHERE products MATCH ? ORDER BY rank, rowid LIMIT ?",
            (expression, limit),
        ).fetchall()
    return [{"id": row[0], "title": row[1], "price": row[2]} for row in rows]


@contextlib.contextmanager
def _reader(db: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the index for one ``with`` block (it sees committed data only)."""
    connection = sqlite3.connect(f"file:{Path(db)}?mode=ro", uri=True)
    try:
        yield connection
    finally:
        connection.close()


MAX_LIMIT = 1_000


def search_app(db: str | os.PathLike[str]) -> web.Application:
    """The HTTP endpoint: ``GET /search?q=words[&limit=N]`` answers
    ``{"query": ..., "results": [{"id", "title", "price"}, ...]}``; no ``q`` or a bad ``limit`` is a 400."""

    async def handle(request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        if not query.strip():
            raise web.HTTPBadRequest(text="search: give the words to look for as ?q=...")
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            raise web.HTTPBadRequest(
                text=f"search: limit must be a whole number, not {request.query['limit']!r}"
            ) from None
        if not 1 <= limit <= MAX_LIMIT:
            raise web.HTTPBadRequest(text=f"search: limit must be between 1 and {MAX_LIMIT}, not {limit}")
        results = await asyncio.to_thread(search, db, query, limit)
        return web.json_response(
            {"query": query, "results": results}, dumps=lambda v: orjson.dumps(v).decode()
        )

    app = web.Application()
    app.router.add_get("/search", handle)
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:``port`` (0: any free port) inside the block; gives its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


async def run(flow: Flow, db: Path, port: int | None) -> None:
    """Run ``flow``; with a ``port``, serve searches while it runs and afterwards, until cancelled."""
    if port is None:
        await flow.run()
        return
    async with serving(search_app(db), port) as url:
        print(f"searching at {url}search?q=...", flush=True)
        await flow.run()
        print(f"all updates indexed: {len(documents(db))} products; still serving", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """The command line (``--help``)."""
    parser = argparse.ArgumentParser(
        description="a product-update stream kept in a SQLite FTS5 search index"
    )
    parser.add_argument("--db", type=Path, required=True, help="the index (a SQLite file)")
    parser.add_argument("--updates", type=int, default=5_000, help="how many product updates")
    parser.add_argument("--products", type=int, default=300, help="how many distinct products")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rate", type=float, default=0, help="updates per second (0: no limit)")
    parser.add_argument("--checkpoint-dir", type=Path, help="take checkpoints there and resume from them")
    parser.add_argument("--checkpoint-interval-ms", type=int, default=1_000)
    parser.add_argument("--port", type=int, default=8082, help="HTTP port of /search")
    parser.add_argument("--no-http", action="store_true", help="index only, exit at the end")
    parser.add_argument("--journal", action="store_true", help="also record every applied change")
    args = parser.parse_args(argv)
    flow = build(
        args.db, seed=args.seed, count=args.updates, products=args.products,
        rate=args.rate or None, journal=args.journal,
    )  # fmt: skip
    if args.checkpoint_dir is not None:
        flow.enable_checkpointing(args.checkpoint_dir, interval_ms=args.checkpoint_interval_ms)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the serving
        asyncio.run(run(flow, args.db, None if args.no_http else args.port))
    if args.no_http:
        print(orjson.dumps({"documents": len(documents(args.db))}).decode(), flush=True)


if __name__ == "__main__":
    main()
