"""The HTML report in a real browser: headless Chromium (through Playwright) opens report.html
as written by `write_report`, renders the plots and the gallery images, shows a flagged sanity
check, logs no error (a blocked fetch would be one: the page forbids any), asks the network for
nothing, and leaves a full-page screenshot for a person to look at.

Needs the `playwright` Python package and the system Chromium at /usr/bin/chromium (on Debian:
`apt-get install chromium`); `playwright install` is never needed.
"""

from __future__ import annotations

import pytest

from browser import launch_chromium, browser_test
from egide.lab.report.files import write_report
from test_report_html import make_report

pytestmark = browser_test


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


def open_report(browser, report, out_dir):
    """Write `report` and open its report.html; returns (page, console errors, requests)."""
    paths = write_report(report, out_dir)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto("file://" + paths["report.html"], wait_until="load")
    return page, errors, requests


def test_report_renders_in_chromium(browser, tmp_path):
    report = make_report(size=64, gallery=6, flagged=True, absent_class="pituitary")
    page, errors, requests = open_report(browser, report, tmp_path)

    # Plots: inline SVG with a real size, the attack names drawn as text.
    plots = page.locator("figure.plot svg")
    assert plots.count() == 2
    for i in range(2):
        box = plots.nth(i).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 150
    legend = plots.first.text_content()
    assert all(name in legend for name in ("fgsm", "pgd", "bim", "worst case"))

    # Gallery: every image decoded by the browser at its own resolution, shown 128 px wide.
    sizes = page.eval_on_selector_all(
        ".gallery img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight, e.width])"
    )
    assert len(sizes) == 3 * 6
    assert all(done and nw == 64 and nh == 64 and w == 128 for done, nw, nh, w in sizes), sizes
    assert page.eval_on_selector(".gallery img", "e => getComputedStyle(e).imageRendering") == "pixelated"

    # The flagged check is on screen and red.
    banner = page.locator("#sanity .banner.flag")
    assert banner.is_visible() and "flagged" in banner.text_content()
    red = page.eval_on_selector("#sanity li.check.flag .badge", "e => getComputedStyle(e).backgroundColor")
    assert red == "rgb(180, 35, 24)"

    # Nothing fetched, nothing blocked, nothing thrown.
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert errors == []

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    page.close()


def test_thin_report_renders_in_chromium(browser, tmp_path):
    report = make_report(gallery=0, eps=(0.03,), cw=False, sanity=False, attacks=("pgd",))
    page, errors, requests = open_report(browser, report, tmp_path)
    assert page.locator("figure.plot svg").count() == 1
    assert page.locator("#sanity .banner.warn").is_visible()
    assert page.locator(".gallery img").count() == 0
    assert errors == [] and all(url.startswith(("file://", "data:")) for url in requests)
    page.close()


def test_the_suite_and_its_masking_flag_render_in_chromium(browser, tmp_path):
    from test_report_html import _suite

    report = make_report(size=64, gallery=0)
    report.suite = _suite(report, masking=True, left_out=False)
    page, errors, requests = open_report(browser, report, tmp_path)
    table = page.locator("#suite table.matrix")
    assert table.is_visible() and table.locator("thead th").count() == 1 + 4 + 2
    flag = page.locator("#suite .banner.flag")
    assert flag.is_visible() and "lowered robust accuracy" in flag.text_content()
    colour = page.eval_on_selector("#suite .banner.flag", "e => getComputedStyle(e).color")
    assert colour != page.eval_on_selector("#suite .lead", "e => getComputedStyle(e).color")
    # The headline names the suite, and the contents link to its section.
    page.click('a[href="#suite"]')
    assert page.evaluate("() => location.hash") == "#suite"
    assert errors == [] and all(url.startswith(("file://", "data:")) for url in requests)
    page.close()
