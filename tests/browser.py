"""Headless Chromium for tests: Debian's ``chromium`` + ``chromium-driver`` through Selenium.

``.ci/run`` installs the two Debian packages when they are missing; the ``selenium``
driver comes with the dev extra. When something is missing the test fails saying
exactly what, never skips quietly.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
)


def missing() -> list[str]:
    """What this machine lacks to drive a browser (empty when all is there)."""
    out = []
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        out.append(f"{CHROMIUM} (Debian package `chromium`)")
    if not Path(CHROMEDRIVER).exists() and shutil.which("chromedriver") is None:
        out.append(f"{CHROMEDRIVER} (Debian package `chromium-driver`)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        out.append("the Python package `selenium` (in the dev extra: `make venv`)")
    return out


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile."""
    lacking = missing()
    if lacking:
        pytest.fail(
            "the browser test needs "
            + "; ".join(lacking)
            + " — run `apt-get install chromium chromium-driver` (as .ci/run does)",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="streamrec-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(CHROMEDRIVER if Path(CHROMEDRIVER).exists() else "chromedriver"),
        options=options,
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
