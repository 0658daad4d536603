"""The lab page in a real browser against a real server: `egide serve` runs as a subprocess,
headless Chromium (through Playwright) drives the page. The attack form is generated from the
plugin's schema, follows the attack chosen, shows the server's 422 message at the field, and a
small FGSM job runs to done with its numbers and images on screen. Leaves a screenshot.

Needs the `playwright` Python package and the system Chromium at /usr/bin/chromium, like
tests/test_report_browser.py: skipped locally without them, an error in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browser import launch_chromium, needs_browser

pytestmark = needs_browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def egide_command() -> list[str]:
    script = Path(sys.executable).with_name("egide")
    if script.exists():
        return [str(script)]
    found = shutil.which("egide")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from egide.core.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    instance = tmp_path_factory.mktemp("web-instance")
    log = open(instance / "server.log", "w")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("EGIDE_TOKEN", None)
    env.pop("EGIDE_API_TOKEN", None)
    proc = subprocess.Popen(
        egide_command() + ["serve", "--port", str(port), "--instance", str(instance)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"egide serve exited with {proc.returncode}: {(instance / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(base + "/api/v1/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("egide serve did not answer within 90 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


def test_the_lab_page_runs_an_attack(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server + "/", wait_until="load")

    # The demo is preselected; the FGSM form is generated from its schema.
    assert page.locator("#model").input_value() == "brain-tumor-cnn"
    assert page.locator("#data").input_value() == "brain-tumor-phantom"
    assert page.locator("#split").input_value() == "test"
    assert page.locator("#attack").input_value() == "fgsm"
    eps = page.get_by_role("spinbutton", name="Eps", exact=True)  # hidden fieldsets are not in the a11y tree
    assert eps.is_visible() and eps.get_attribute("type") == "number"
    assert "Perturbation budget" in page.locator("#p-fgsm-eps-help").text_content()
    norm = page.locator("#p-fgsm-norm")
    assert norm.evaluate("e => e.tagName") == "SELECT"
    assert norm.locator("option").all_text_contents() == ["inf", "2"]
    targeted = page.get_by_role("checkbox", name="Targeted")
    assert targeted.get_attribute("type") == "checkbox" and not targeted.is_checked()

    # Switching the attack switches the fields.
    page.select_option("#attack", "pgd")
    assert page.locator("#p-pgd-steps").is_visible() and page.locator("#p-pgd-restarts").is_visible()
    assert not page.locator("#p-fgsm-eps").is_visible()
    assert page.locator("#p-pgd-step_size").get_attribute("placeholder") == "automatic"  # optional
    page.select_option("#attack", "fgsm")
    assert page.locator("#p-fgsm-eps").is_visible() and not page.locator("#p-pgd-steps").is_visible()

    # An invalid value: the server's 422 message appears at the field.
    eps.fill("-0.5")
    page.click("#attack-run")
    error = page.locator("#p-fgsm-eps-error")
    error.wait_for(state="visible", timeout=10_000)
    assert "greater than 0" in error.text_content()
    assert eps.get_attribute("aria-invalid") == "true"
    page.locator("#params-fgsm").screenshot(path=str(Path(os.environ.get("EGIDE_SCREENSHOT_DIR", tmp_path)) / "web-lab-invalid.png"))

    # A small FGSM job runs to done; its numbers and images appear.
    eps.fill("0.0157")
    page.fill("#attack-limit", "8")
    page.click("#attack-run")
    assert not error.is_visible()
    page.locator("#attack-state.done").wait_for(timeout=60_000)
    page.locator("#attack-result").wait_for(state="visible")
    metrics = page.locator("#attack-metrics").text_content()
    assert "Robust accuracy" in metrics and "Success rate" in metrics and "Mean L2" in metrics
    page.wait_for_function(
        "() => [...document.querySelectorAll('#attack-gallery img')].every(i => i.complete && i.naturalWidth === 64)"
        " && document.querySelectorAll('#attack-gallery img').length === 12",
        timeout=10_000,
    )
    assert "true: " in page.locator("#attack-gallery figcaption").first.text_content()

    # The evaluation panel: one attack, one epsilon; its report links appear when done.
    page.uncheck("#eval-form input[value=pgd]")
    page.fill("#eval-eps", "4/255")
    page.fill("#eval-limit", "8")
    page.click("#eval-run")
    page.locator("#eval-state.done").wait_for(timeout=60_000)
    page.wait_for_function("() => document.getElementById('eval-report').href.startsWith('blob:')", timeout=10_000)
    assert "Worst case at 4/255" in page.locator("#eval-metrics").text_content()

    shot = Path(os.environ.get("EGIDE_SCREENSHOT_DIR", tmp_path)) / "web-lab.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")

    # Chromium logs every 4xx answer as a console error: the one 422 above is expected.
    assert [e for e in errors if "status of 422" not in e] == []
    assert all(u.startswith((server, "blob:", "data:")) for u in requests), requests
    page.close()
