"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``).

The browser loads the page from a running job and the test reads what the page drew: one SVG node
per actor with its name, instance, rate and watermark, a line per operator where a chain has
several, and every operator's counts in the node's tooltip; each node coloured by its input mailbox's
fill, going red while a sink is stuck and green again once it drains; one point per checkpoint in
the chart. Selenium drives the browser through the chromedriver that comes with Debian's chromium
(never a downloaded browser). Its calls block, so they run in a worker thread while the event loop
serves the page.

Without the browser the test is skipped, except in CI (``CI`` set), where that is a failure.
(``docs/dashboard.png`` is taken by ``scripts/dashboard_screenshot.py``, from a flow under load.)
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actorflow import CallbackSink, Flow, PushSource, WatermarkStrategy
from actorflow.checkpoint.storage import MemoryStorage
from actorflow.web import HttpConfig
from tests.test_web import Arrivals, Gate, Profile, running, until

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "dashboard-token"

#: What the page drew, read in the browser.
READ_PAGE = """
return {
  status: document.getElementById("status").textContent,
  actors: [...document.querySelectorAll("#mesh g.actor")].map(g => ({
    name: g.dataset.name,
    fill: Number(g.dataset.fill),
    colour: g.querySelector("rect.box").getAttribute("fill"),
    texts: [...g.querySelectorAll("text")].map(t => t.textContent),
    lines: [...g.querySelectorAll("text.operator")].map(t => [t.dataset.operator, t.textContent]),
    tooltip: g.querySelector("title").textContent,
  })),
  channels: [...document.querySelectorAll("#mesh path.channel")]
    .map(p => [p.dataset.sender, p.dataset.receiver]),
  points: [...document.querySelectorAll("#checkpoints circle.cp-point")].map(c => Number(c.dataset.id)),
  operators: [...document.querySelectorAll("#q-operator option")].map(o => o.value),
};
"""

GREEN = "hsl(130, 60%, 82%)"
RED = "hsl(0, 60%, 82%)"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium under chromedriver, quit (both processes gone) after the test."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.isfile(path)]
    if missing:
        message = f"no {' and no '.join(missing)}: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1360,960",
        f"--user-data-dir={tmp_path / 'profile'}",
        # Nothing but the page under test: no component updates, sync or other background traffic.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


async def read_page(driver: Any) -> dict[str, Any]:
    return await asyncio.to_thread(driver.execute_script, READ_PAGE)  # type: ignore[no-any-return]


async def until_drawn(driver: Any, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Read the page until ``check`` holds for what it drew (it redraws on every poll)."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        page = await read_page(driver)
        if check(page):
            return page
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the dashboard never showed {what}; it drew {page}")
        await asyncio.sleep(0.05)


def actor(page: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in page["actors"] if a["name"] == name)


async def test_the_dashboard_draws_the_live_mesh_and_the_checkpoint_history(browser: Any) -> None:
    arrivals = Arrivals()
    gate = Gate(arrivals)
    flow = Flow("payments", parallelism=3, batch_size=1, mailbox_capacity=2)
    flow.enable_checkpointing(MemoryStorage())
    source = PushSource()
    (
        flow.from_source(source, name="transactions", watermarks=WatermarkStrategy.punctuated("ts"))
        .map(dict, name="parse")
        .filter(lambda tx: tx["amount"] >= 0, name="valid")  # chained: "parse -> valid"
        .key_by(lambda tx: tx["card"])
        .process(Profile(), name="risk")
        .sink(CallbackSink(gate.receive), name="alerts", parallelism=1)
    )
    async with running(flow, HttpConfig(port=0, token=TOKEN)) as (server, _client, _job):
        start = 1_764_000_000_000
        for n in range(12):
            await source.send({"card": f"card-{n % 5}", "amount": 10 * n, "ts": start + n * 100})
        await arrivals.wait_for(12)
        checkpoints = [(await flow.checkpoint()).checkpoint_id for _ in range(3)]
        assert flow.metrics is not None
        names = [entry.name for entry in flow.metrics.actors]

        # The token comes with the URL; the page sends it on as a bearer token.
        await asyncio.to_thread(browser.get, f"{server.url}?token={TOKEN}&interval=200")
        page = await until_drawn(
            browser,
            lambda p: len(p["actors"]) == len(names) and p["points"] == checkpoints,
            "every actor and the three checkpoints",
        )
        assert page["status"] == "running"
        assert sorted(a["name"] for a in page["actors"]) == sorted(names)
        assert sorted(map(tuple, page["channels"])) == sorted(
            (c.sender, c.receiver) for c in flow.metrics.channels
        )
        assert page["operators"] == ["risk"]
        for entry in flow.metrics.actors:
            drawn = actor(page, entry.name)
            title, instance, rate, watermark, *lines = drawn["texts"]
            assert (title, instance) == (entry.chain, f"{entry.index + 1}/{entry.parallelism}")
            assert rate.endswith("rec/s") and " in · " in rate
            # 2025-11-24 is not today: the date comes with the time (UTC).
            assert watermark.startswith("wm 2025-11-24 16:00:0") and " · lag " in watermark, watermark
            assert (drawn["fill"], drawn["colour"]) == (0, GREEN)
            operators = entry.operator_metrics()
            for counts in operators:  # every operator's own numbers, in the tooltip
                line = f"\n{counts.name}: {counts.records_in} in, {counts.records_out} out, wm "
                assert line in drawn["tooltip"], drawn["tooltip"]
            if entry.chain == "parse -> valid":  # several operators: a line each
                assert [name for name, _ in drawn["lines"]] == ["parse", "valid"]
                assert lines == [line for _, line in drawn["lines"]]
                assert all(line.endswith(" rec/s") and " → " in line for line in lines), lines
                assert [c.records_in for c in operators] == [4, 4]  # rebalanced: 12 records, 3 ways
            else:
                assert lines == drawn["lines"] == []

        # The sink gets stuck: it holds one record, and the two behind it fill its mailbox from the
        # card's risk instance (capacity 2). Old timestamps: no watermark moves, so no other
        # mailbox gets anything. The sink turns red; everything else stays green.
        gate.close()
        sink = "alerts[1/1]"
        inputs = [c.mailbox for c in flow.metrics.channels if c.receiver == sink]
        before = sum(box.stats().puts for box in inputs)
        for n in range(1, 4):
            await source.send({"card": "card-0", "amount": 1, "ts": start})
            await until(
                lambda n=n: sum(b.stats().puts for b in inputs) == before + n, "record in the mailbox"
            )
        page = await until_drawn(browser, lambda p: actor(p, sink)["fill"] == 1, "the sink's full mailbox")
        assert actor(page, sink)["colour"] == RED
        assert [a["colour"] for a in page["actors"] if a["name"] != sink] == [GREEN] * (len(names) - 1)

        # It drains: green again.
        gate.open()
        await arrivals.wait_for(12 + 3)
        page = await until_drawn(browser, lambda p: actor(p, sink)["fill"] == 0, "the drained mailbox")
        assert actor(page, sink)["colour"] == GREEN
        # A watermark of today is a time of day; small numbers (synthetic time) stay as they are.
        shown = await asyncio.to_thread(
            browser.execute_script, "return [eventTime(Date.now()), eventTime(5000)];"
        )
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", shown[0]) and shown[1] == "5000", shown
        errors = [
            entry
            for entry in await asyncio.to_thread(browser.get_log, "browser")
            if entry["level"] == "SEVERE"
        ]
        assert errors == []
        source.close()
