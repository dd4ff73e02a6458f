"""Take ``docs/dashboard.png``: a card-payments flow under load, its dashboard in headless Chromium.

The flow runs at parallelism 3 with checkpoints every 700 ms; a producer pushes a few thousand
transactions a second and the alert sink is a little slower than that, so mailboxes fill and empty.
After ``--seconds`` the script looks one card's risk profile up in the page's keyed-state form and
saves the whole page. It uses Debian's chromium and chromedriver (``apt-get install -y chromium
chromium-driver``), never a downloaded browser::

    python3 scripts/dashboard_screenshot.py --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from actorflow import (
    CallbackSink,
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    PushSource,
    RuntimeContext,
    ValueState,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from actorflow.web import HttpConfig, serve_http

__all__ = ["CHROMEDRIVER", "CHROMIUM", "headless_chromium", "main"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def headless_chromium(profile: Path, *, width: int = 1360, height: int = 960) -> webdriver.Chrome:
    """Debian's Chromium, headless, under Debian's chromedriver, with a throw-away ``profile``.

    Selenium finds both by path, so its driver manager never runs (it would download a browser).
    Quit it with ``driver.quit()``: that ends the browser and the driver.
    """
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
        # Nothing but the page: no component updates, sync or other background traffic.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class RiskProfile(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per card: purchases, total and largest amount; a purchase over 5x the average is an alert."""

    def open(self, ctx: RuntimeContext) -> None:
        self.profile: ValueState[dict[str, Any] | None] = ctx.get_state(ValueStateDescriptor("profile"))

    def process_element(self, tx: dict[str, Any], ctx: Context, out: Collector) -> None:
        profile = self.profile.value() or {"purchases": 0, "total": 0.0, "largest": 0.0}
        average = profile["total"] / profile["purchases"] if profile["purchases"] else None
        profile = {
            "purchases": profile["purchases"] + 1,
            "total": round(profile["total"] + tx["amount"], 2),
            "largest": max(profile["largest"], tx["amount"]),
            "last_region": tx["region"],
        }
        self.profile.update(profile)
        suspicious = average is not None and tx["amount"] > 5 * average
        out.collect({"card": tx["card"], "amount": tx["amount"], "suspicious": suspicious})


async def produce(source: PushSource, rate: float) -> None:
    """Transactions at about ``rate`` a second (swinging by a third over 6 s), event time = now."""
    rng = random.Random(7)
    started = time.monotonic()
    sent = 0
    while True:
        elapsed = time.monotonic() - started
        # The integral of rate * (1 + sin(t)/3): how many should have gone out by now.
        due = int(rate * (elapsed + (1 - math.cos(elapsed)) / 3)) - sent
        now = int(time.time() * 1000)
        for _ in range(max(0, due)):
            card = f"card-{rng.randrange(500):03d}"
            amount = round(rng.lognormvariate(3, 1), 2)
            await source.send(
                {"card": card, "amount": amount, "ts": now - rng.randrange(150), "region": "eu"}
            )
        sent += max(0, due)
        await asyncio.sleep(0.01)


async def alert(record: dict[str, Any]) -> None:
    # A sink that keeps up only just: it pauses now and then, so mailboxes fill and drain.
    if random.random() < 0.02:
        await asyncio.sleep(0.01)


async def take(out: Path, seconds: float, rate: float) -> None:
    flow = Flow("card-payments", parallelism=3, batch_size=64, mailbox_capacity=4)
    with tempfile.TemporaryDirectory() as scratch:
        flow.enable_checkpointing(Path(scratch) / "checkpoints", interval_ms=700)
        source = PushSource(capacity=4096)
        (
            flow.from_source(
                source,
                name="transactions",
                watermarks=WatermarkStrategy.bounded_out_of_orderness(200, "ts"),
            )
            .map(lambda tx: {**tx, "amount": float(tx["amount"])}, name="parse")
            .filter(lambda tx: tx["amount"] > 1.0, name="valid")
            .key_by(lambda tx: tx["card"])
            .process(RiskProfile(), name="risk")
            .sink(CallbackSink(alert), name="alerts", parallelism=1)
        )
        async with serve_http(flow, HttpConfig(port=0)) as server:
            job = asyncio.ensure_future(flow.run())
            producer = asyncio.ensure_future(produce(source, rate))
            driver = await asyncio.to_thread(headless_chromium, Path(scratch) / "profile")
            try:
                await asyncio.to_thread(driver.get, f"{server.url}?interval=500")
                await asyncio.sleep(seconds)  # let rates, watermarks and checkpoints build up
                await asyncio.to_thread(_look_up, driver, "card-042")
                await asyncio.sleep(1.0)
                height = await asyncio.to_thread(driver.execute_script, "return document.body.scrollHeight")
                await asyncio.to_thread(
                    driver.execute_cdp_cmd,
                    "Emulation.setDeviceMetricsOverride",
                    {"width": 1360, "height": int(height), "deviceScaleFactor": 1, "mobile": False},
                )
                await asyncio.sleep(0.6)  # one more poll at the new size
                await asyncio.to_thread(driver.save_screenshot, str(out))
            finally:
                await asyncio.to_thread(driver.quit)
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer
                source.close()
                await job


def _look_up(driver: webdriver.Chrome, key: str) -> None:
    """Type ``key`` into the keyed-state form (its operator list starts with ``risk``) and submit."""
    driver.find_element(By.ID, "q-key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#query button").click()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--seconds", type=float, default=8.0, help="how long the flow runs first")
    parser.add_argument("--rate", type=float, default=3000.0, help="transactions per second")
    arguments = parser.parse_args(argv)
    asyncio.run(take(arguments.out, arguments.seconds, arguments.rate))
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
