"""The search index example: product updates kept in a SQLite FTS5 index exactly once, over HTTP.

The index after a run must be the catalogue a plain replay of the updates gives, and a search must
find what a plain word match over that catalogue finds. The sink's commit is checked directly
(idempotent, leftovers of an unfinished checkpoint dropped), and end to end: the example run in a
subprocess with checkpoints every 150 ms, killed with SIGKILL at random moments and started again
until it finishes, must leave every product exactly once, no deleted one, and a journal in which
every change the keyed step passed on was applied exactly once (tests/test_crash_recovery.py's
shape: each kill waits for a new checkpoint first, so every attempt makes progress).
"""

from __future__ import annotations

import asyncio
import doctest
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actorflow import Flow
from actorflow.operators.base import OperatorContext
from examples import search_index
from tests.killing import DEADLINE_S, newest_checkpoint, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent

COUNT = 3_000
PRODUCTS = 200
SEED = 5


def expected_documents(stream: list[dict[str, Any]]) -> list[tuple[int, str, str, float, int]]:
    """The catalogue after ``stream`` as the index lists it: (id, title, description, price, version)."""
    final = search_index.catalogue(stream)
    return [
        (product, u["title"], u["description"], u["price"], u["version"])
        for product, u in sorted(final.items())
    ]


def expected_changes(stream: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """What the keyed step passes on, in order: (id, version, op) of each update newer than any
    update of its product before it."""
    seen: dict[int, int] = {}
    changes = []
    for update in stream:
        if update["version"] > seen.get(update["id"], 0):
            seen[update["id"]] = update["version"]
            changes.append((update["id"], update["version"], update["op"]))
    return changes


def journal(db: Path) -> list[tuple[int, int, str]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT id, version, op FROM journal ORDER BY seq").fetchall()


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    return search_index.updates(SEED, COUNT, PRODUCTS)


@pytest.fixture(scope="module")
def indexed(stream: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The index after a run without failures (no checkpoints: one commit at the end)."""
    db = tmp_path_factory.mktemp("search") / "index.sqlite"
    search_index.build(db, seed=SEED, count=COUNT, products=PRODUCTS, journal=True).execute()
    return db


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(search_index).failed == 0


def test_the_stream_has_deletes_and_updates_out_of_order(stream: list[dict[str, Any]]) -> None:
    # Otherwise the keyed step and the deletes would go untested.
    newest: dict[int, int] = {}
    late = 0
    for update in stream:
        late += update["version"] < newest.get(update["id"], 0)
        newest[update["id"]] = max(newest.get(update["id"], 0), update["version"])
    assert late >= 10
    assert sum(update["op"] == "delete" for update in stream) >= 100
    assert len(search_index.catalogue(stream)) < PRODUCTS


def test_the_index_after_a_run_is_the_final_catalogue(stream: list[dict[str, Any]], indexed: Path) -> None:
    assert search_index.documents(indexed) == expected_documents(stream)
    assert journal(indexed) == expected_changes(stream)


@pytest.mark.parametrize("query", ["red", "Red MUG", "handmade, steel!", "vase quiet", "nosuchword"])
def test_a_search_finds_the_products_holding_every_word(
    query: str, stream: list[dict[str, Any]], indexed: Path
) -> None:
    wanted = words(query)
    expected = {
        product
        for product, u in search_index.catalogue(stream).items()
        if wanted <= words(u["title"] + " " + u["description"])
    }
    found = search_index.search(indexed, query, limit=search_index.MAX_LIMIT)
    assert {hit["id"] for hit in found} == expected
    assert query == "nosuchword" or expected, "the query should match something"
    assert search_index.search(indexed, " ,; ") == []


def test_an_update_without_its_fields_fails_the_job_naming_it(tmp_path: Path) -> None:
    flow = Flow("bad-update")
    bad = {"op": "upsert", "id": 3, "version": 1, "title": "Red mug"}
    (
        flow.from_iterable([bad])
        .key_by("id")
        .process(search_index.LatestVersion(), name="latest-version")
        .sink(search_index.SearchIndexSink(tmp_path / "index.sqlite"))
    )
    with pytest.raises(
        Exception, match=r"latest-version: an upsert needs a title, a description and a price"
    ):
        flow.execute()


def test_the_commit_is_idempotent_and_an_unfinished_checkpoint_leaves_nothing(tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite"
    upsert = {
        "op": "upsert",
        "id": 1,
        "version": 1,
        "title": "Red lamp",
        "description": "Bright.",
        "price": 9.5,
    }
    sink = search_index.SearchIndexSink(db, journal=True)
    sink.open(OperatorContext("search-index", checkpointing=True))
    sink.write([upsert])
    state = sink.snapshot_state()  # the barrier: pre-committed, not visible yet
    (handle,) = state["pending"]
    assert search_index.documents(db) == []
    sink.write(
        [{"op": "upsert", "id": 2, "version": 1, "title": "Blue mug", "description": "", "price": 3.0}]
    )
    sink.snapshot_state()  # a second checkpoint that will never complete
    sink.close()  # a crash before the first checkpoint's commit

    again = search_index.SearchIndexSink(db, journal=True)
    again.open(OperatorContext("search-index", checkpointing=True))
    again.restore_state([state])  # commits the restored handle, drops the rest
    again.commit(handle)  # once more: nothing changes
    assert [row[0] for row in search_index.documents(db)] == [1]
    assert journal(db) == [(1, 1, "upsert")]
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM staged").fetchone() == (0,)
    again.write([{**upsert, "version": 2, "op": "delete"}])
    again.snapshot_state()
    asyncio.run(again.checkpoint_complete(2))
    assert search_index.documents(db) == []
    assert journal(db) == [(1, 1, "upsert"), (1, 2, "delete")]
    again.close()


async def test_the_http_endpoint_answers_a_search(indexed: Path) -> None:
    async with (
        search_index.serving(search_index.search_app(indexed), 0) as url,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"{url}search", params={"q": "red mug", "limit": "1000"}) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        async with session.get(f"{url}search", params={"q": "  "}) as response:
            assert response.status == 400
            assert "?q=" in await response.text()
    assert body["query"] == "red mug"
    assert body["results"] == search_index.search(indexed, "red mug", limit=1000)
    assert body["results"] and all(words(hit["title"]) >= {"red", "mug"} for hit in body["results"])


# -- killed and restarted -------------------------------------------------------------------------

CRASH_COUNT = 6_000
RATE = 2_000
INTERVAL_MS = 150
KILLS = 4


def applied(db: Path) -> int:
    """The newest transaction applied to the index (0: none, or no index yet)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        return search_index.last_applied(connection)


@pytest.mark.timeout(90)
def test_killed_and_restarted_runs_index_every_product_exactly_once(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    rng = random.Random(23)
    db = tmp_path / "index.sqlite"
    checkpoints = tmp_path / "checkpoints"
    command = [
        sys.executable, "-m", "examples.search_index", "--db", str(db), "--no-http", "--journal",
        "--updates", str(CRASH_COUNT), "--products", str(PRODUCTS), "--seed", str(SEED),
        "--rate", str(RATE), "--checkpoint-dir", str(checkpoints),
        "--checkpoint-interval-ms", str(INTERVAL_MS),
    ]  # fmt: skip
    early = rng.randrange(1, KILLS)  # this attempt is killed during its start-up instead
    after_commit = 0  # kills that came after the index had committed some checkpoint
    notes = []
    for attempt in range(KILLS):
        errors = tmp_path / f"stderr-{attempt}.txt"
        before = newest_checkpoint(checkpoints)
        with errors.open("wb") as stderr:  # a file, not a pipe: a full pipe would block the run
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        processes.append(process)
        # The kill comes at a random moment (the test's subject, not a synchronisation): during
        # start-up for one attempt, anywhere after a checkpoint of its own for the others.
        if attempt == early:
            time.sleep(rng.uniform(0.0, 0.5))
        elif wait_for(lambda: newest_checkpoint(checkpoints) > before, process, "new checkpoint"):  # noqa: B023
            time.sleep(rng.uniform(0.0, 2 * INTERVAL_MS / 1000))
        if process.poll() is not None:
            assert process.returncode == 0, errors.read_text()
            notes.append(f"attempt {attempt} finished")
            continue
        process.send_signal(signal.SIGKILL)
        process.wait()
        committed = applied(db)
        after_commit += committed > 0
        with sqlite3.connect(db) as connection:
            staged = connection.execute("SELECT COUNT(DISTINCT txn) FROM staged").fetchone()[0]
        notes.append(f"attempt {attempt} killed, transaction {committed} applied, {staged} staged")

    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, timeout=DEADLINE_S, check=False)
    assert done.returncode == 0, done.stderr.decode()
    stream = search_index.updates(SEED, CRASH_COUNT, PRODUCTS)
    assert search_index.documents(db) == expected_documents(stream), notes
    assert journal(db) == expected_changes(stream), f"a change lost or applied twice: {notes}"
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM staged").fetchone() == (0,)
    print(notes)
    assert after_commit >= 2, f"too few kills after a commit to exercise recovery: {notes}"
