"""The console in a real headless Chromium, on a running `cascata up`: the page loads, the
topology shows every declared processor, its counts move while records flow and then match
`cascata status --json`, a view lookup shows a balance, and the quarantine lists a record with
its reason. With CASCATA_SCREENSHOTS=<dir> it also saves the README's screenshots there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cascata.local.emulator import external
from cascata.local.serve import UpOptions
from cascata.producer import Outgoing, produce
from payments.pipeline import PIPELINE
from tests.support.browser import headless_chromium, require_browser
from tests.support.events import payment
from tests.support.up import running_up

pytestmark = pytest.mark.pipeline

STAGE = "consoleweb"
ROOT = Path(__file__).resolve().parents[2]
PAYERS = ("ana", "ben", "cy", "dee", "eli")
BATCHES = 12
PER_BATCH = 25
SENT = BATCHES * PER_BATCH
AMOUNT = 100


@pytest.fixture(scope="module")
def up() -> Iterator[dict[str, Any]]:
    require_browser()
    with running_up(UpOptions(port=0, api_port=0, stage=STAGE, console_port=0),
                    timeout_s=120) as endpoints:
        yield endpoints


@pytest.fixture(scope="module")
def chrome(up: dict[str, Any]) -> Iterator[Any]:
    with headless_chromium() as browser:
        yield browser


def wait(chrome: Any, condition: Any, timeout_s: float = 120, what: str = "") -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(chrome, timeout_s, poll_frequency=0.2).until(condition, what)


def number(text: str) -> int:
    return int(text.replace(",", "").strip() or "0")


def shoot(chrome: Any, name: str) -> None:
    folder = os.environ.get("CASCATA_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        wide = name.startswith("topology")
        if wide:  # the whole graph in one picture
            chrome.set_window_size(2260, 1180)
        chrome.save_screenshot(str(Path(folder) / f"console-{name}.png"))
        if wide:
            chrome.set_window_size(1600, 1000)


def text_of(chrome: Any, selector: str) -> str:
    """The text of the first element `selector` finds, read in one step in the page (the
    tables are redrawn every second: a handle held across two steps can go stale)."""
    found = chrome.execute_script(
        "const n = document.querySelector(arguments[0]); return n ? n.textContent : '';",
        selector)
    return str(found)


def cell(chrome: Any, mapping: str, field: str) -> str:
    return text_of(chrome, f'td[data-mapping="{mapping}"][data-field="{field}"]')


def status_json(up: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "cascata", "status", "--json", "--stage", STAGE,
         "--endpoint-url", up["aws_endpoint_url"]],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_the_console_shows_the_pipeline_live(up: dict[str, Any], chrome: Any) -> None:
    from selenium.webdriver.common.by import By

    console = up["console_url"]
    chrome.get(console)
    # The page loads and draws every declared processor.
    wait(chrome, lambda c: c.find_elements(By.CSS_SELECTOR, "[data-node]"), what="topology")
    drawn = {e.get_attribute("data-node")
             for e in chrome.find_elements(By.CSS_SELECTOR, "g.node.processor")}
    assert drawn == {f"processor:{p.name}" for p in PIPELINE.processors}
    assert chrome.title.startswith(PIPELINE.app)
    wait(chrome, lambda c: cell(c, "validate/payments-raw", "records_in") == "0",
         what="the first status")

    # Records flow for a few seconds; the page's counts move with them.
    aws = external(up["aws_endpoint_url"])
    raw = PIPELINE.physical_name("payments-raw", stage=STAGE)
    done = threading.Event()

    def producer() -> None:
        try:
            for batch in range(BATCHES):
                produce(aws.client("kinesis"), raw, [
                    Outgoing(payer, json.dumps(payment(f"w{batch}-{i}", payer=payer,
                                                       amount_minor=AMOUNT)).encode())
                    for i in range(PER_BATCH) for payer in [PAYERS[i % len(PAYERS)]]])
                time.sleep(0.4)
            produce(aws.client("kinesis"), raw,
                    [Outgoing("zed", json.dumps({"type": "payment.made"}).encode())])
        finally:
            done.set()

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    seen: list[int] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        value = number(cell(chrome, "validate/payments-raw", "records_in"))
        if not seen or value != seen[-1]:
            seen.append(value)
        if len(seen) == 3:
            shoot(chrome, "topology")
        if done.is_set() and value == SENT + 1:
            break
        time.sleep(0.2)
    thread.join(timeout=60)
    assert seen[-1] == SENT + 1, seen
    assert len(seen) >= 2 and seen == sorted(seen), f"the counts did not move: {seen}"

    # Once the pipeline is quiet, the page shows what `cascata status --json` reports.
    wait(chrome, lambda c: text_of(c, "#lag") == "0", what="no lag")
    fields = ("records_in", "invocations", "errors", "retries", "on_failure_records",
              "records_behind")

    def page_matches_status() -> bool:
        report = status_json(up)
        if report["lag_records"]:
            return False
        for mapping in report["processors"]:
            for field in fields:
                if number(cell(chrome, mapping["mapping"], field)) != mapping[field]:
                    return False
        for view, size in report["views"].items():
            shown = text_of(chrome, f'td[data-view="{view}"]')
            if not shown or number(shown) != size:
                return False
        quarantined = report["quarantined"]["validate"]
        return quarantined == 1 and number(cell(chrome, "validate/payments-raw",
                                                "quarantined")) == quarantined

    deadline = time.monotonic() + 60
    while not page_matches_status():
        assert time.monotonic() < deadline, "the page and `cascata status --json` disagree"
        time.sleep(1)


def test_looking_up_an_account_shows_its_balance(up: dict[str, Any], chrome: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    chrome.get(f"{up['console_url']}/#views")
    wait(chrome, lambda c: c.find_elements(By.CSS_SELECTOR, "#view-pick option"),
         what="the tables")
    Select(chrome.find_element(By.ID, "view-pick")).select_by_value("balances")
    chrome.find_element(By.ID, "key").send_keys("bob")
    chrome.find_element(By.ID, "lookup-button").click()
    expected = SENT * AMOUNT
    balance = wait(chrome, lambda c: c.find_elements(
        By.CSS_SELECTOR, '#view-result td[data-attribute="balances"]'), what="bob's balance")
    assert json.loads(balance[0].text) == {"USD": expected}
    shoot(chrome, "views")
    chrome.find_element(By.ID, "key").clear()
    chrome.find_element(By.ID, "key").send_keys("nobody")
    chrome.find_element(By.ID, "lookup-button").click()
    wait(chrome, lambda c: c.find_elements(By.ID, "not-found"), what="no such account")


def test_a_quarantined_record_is_listed_with_its_reason(up: dict[str, Any],
                                                         chrome: Any) -> None:
    from selenium.webdriver.common.by import By

    chrome.get(f"{up['console_url']}/#failures")
    rows = wait(chrome, lambda c: c.find_elements(By.CSS_SELECTOR, "#failure-list tr[data-entry]"),
                what="the quarantined record")
    assert len(rows) == 1
    text = rows[0].text
    assert "validate" in text and "event_id" in text and "payments-raw" in text
    rows[0].click()
    wait(chrome, lambda c: c.find_elements(By.CSS_SELECTOR, "#failure-entry textarea"),
         what="the entry")
    editor = chrome.find_element(By.CSS_SELECTOR, "#failure-entry textarea")
    assert json.loads(editor.get_attribute("value")) == {"type": "payment.made"}
    assert "missing" in chrome.find_element(By.ID, "failure-entry").text
    shoot(chrome, "failures")


def test_the_versions_tab_diffs_two_versions(up: dict[str, Any], chrome: Any) -> None:
    from selenium.webdriver.common.by import By

    chrome.get(f"{up['console_url']}/#versions")
    wait(chrome, lambda c: c.find_elements(By.CSS_SELECTOR, '#version-list tr[data-version="v1"]'),
         what="the versions")
    assert "live" in chrome.find_element(By.CSS_SELECTOR,
                                         '#version-list tr[data-version="v1"]').text
    chrome.find_element(By.CSS_SELECTOR, "#diff-form button").click()
    report = wait(chrome, lambda c: c.find_elements(By.ID, "diff-report"), what="the diff")
    text = report[0].text
    assert text.startswith("0 difference(s) between v1 and v1") and "balances" in text
    assert "null" not in chrome.find_element(By.ID, "diff-result").text


def test_the_stream_browser_shows_the_newest_records(up: dict[str, Any], chrome: Any) -> None:
    from selenium.webdriver.common.by import By

    chrome.get(f"{up['console_url']}/#streams")
    rows = wait(chrome, lambda c: c.find_elements(By.CSS_SELECTOR, "#record-table tbody tr"),
                what="the records")
    first = rows[0].find_elements(By.TAG_NAME, "td")
    assert int(first[0].text) >= int(rows[-1].find_elements(By.TAG_NAME, "td")[0].text)
    assert json.loads(first[4].text)["type"] == "payment.made"  # decoded from the record
