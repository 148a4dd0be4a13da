"""A real headless Chromium for the console tests, driven by Selenium through chromedriver.

The browser comes from the distribution's packages (`make browser` installs Debian's
`chromium` and `chromium-driver` when it can); when none is there, the tests that need one are
skipped with the reason. Selenium never downloads anything: it is pointed at the installed
driver and runs offline.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("chromedriver",)
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-first-run", "--mute-audio",
    "--metrics-recording-only", "--password-store=basic", "--window-size=1600,1000",
)


def find(names: tuple[str, ...], variable: str) -> str | None:
    configured = os.environ.get(variable)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in names:
        found = shutil.which(name) or (f"/usr/lib/chromium/{name}"
                                       if os.access(f"/usr/lib/chromium/{name}", os.X_OK)
                                       else None)
        if found:
            return found
    return None


def require_browser() -> tuple[str, str]:
    """The browser and driver to use, or skip the test saying what is missing."""
    browser = find(BROWSERS, "CASCATA_CHROMIUM")
    driver = find(DRIVERS, "CASCATA_CHROMEDRIVER")
    if browser is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver))
                               if p is None)
        pytest.skip(f"no {missing} on this machine: `make browser` installs Debian's chromium "
                    "and chromium-driver (needs root and apt), or set CASCATA_CHROMIUM and "
                    "CASCATA_CHROMEDRIVER")
    return browser, driver


@contextmanager
def headless_chromium() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = require_browser()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(60)
    try:
        yield chrome
    finally:
        chrome.quit()
