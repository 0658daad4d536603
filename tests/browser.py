"""What every browser test shares: Debian's Chromium driven by Playwright, and the rule that a
browser test may skip on a developer's machine without them, but never in CI."""

from __future__ import annotations

import importlib.util
import os

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

MISSING = [
    reason
    for missing, reason in [
        (not os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
        (importlib.util.find_spec("playwright") is None, "the playwright package is not installed"),
    ]
    if missing
]
if MISSING and os.environ.get("CI"):
    # CI installs both (scripts/test.sh): a browser test skipped there would hide a failure.
    raise RuntimeError(f"browser tests cannot run in CI: {'; '.join(MISSING)}")

needs_browser = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
# A real browser against a real server: the slow tier (`pytest -m "not slow"` leaves it out).
browser_test = [needs_browser, pytest.mark.slow]


def launch_chromium():
    """Yield a headless Chromium browser for a module-scoped fixture; close it afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()
