"""Headless Chromium for the browser tests: Debian's ``chromium`` and ``chromium-driver``, driven
by Selenium (``pip install selenium``, in the ``dev`` extra). ``make test`` installs both
packages as root on Debian (the Makefile's ``browser`` target); elsewhere the tests skip with
:data:`HOW_TO_INSTALL`.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HOW_TO_INSTALL = ("browser tests need Chromium, its driver and Selenium: apt-get install chromium "
                  "chromium-driver (Debian; `make test` does it as root), pip install selenium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def missing() -> str | None:
    """Why the browser tests cannot run here (:data:`HOW_TO_INSTALL`), or None if they can."""
    present = (CHROMIUM.is_file() and CHROMEDRIVER.is_file()
               and importlib.util.find_spec("selenium") is not None)
    return None if present else HOW_TO_INSTALL


@contextmanager
def chromium(width: int = 1200, height: int = 900) -> Iterator:
    """A Selenium driver of a fresh headless Chromium (its own profile folder, console messages
    kept for ``get_log("browser")``), quit and its profile removed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gradschool-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[str]:
    """The page's console messages of level SEVERE (errors, CSP violations, failed loads)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
