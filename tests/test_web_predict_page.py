"""The "Upload a scan" panel in a real browser against a real `egide serve`: upload a PNG of a demo
test image, see the predicted class (the model's own prediction) and a confidence bar per class;
a file that is not an image shows the server's 422 message at the file field.

Same requirements and skip/fail pattern as tests/test_web_page.py (whose fixtures it reuses)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from browser import browser_test
from test_web_page import browser, server  # noqa: F401  (fixtures)

pytestmark = browser_test


def test_upload_a_scan_shows_the_prediction(server, browser, registry, tmp_path):  # noqa: F811
    from PIL import Image

    data = registry.create("dataset", "brain-tumor-phantom").load(split="test").take(1)
    clf = registry.create("model", "brain-tumor-cnn").load()
    expected = data.class_names[int(clf.predict(data.x)[0])]
    scan = tmp_path / "scan.png"
    Image.fromarray((data.x[0, ..., 0] * 255 + 0.5).astype(np.uint8)).save(scan)
    junk = tmp_path / "notes.png"
    junk.write_bytes(b"not an image at all")

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/", wait_until="load")
    assert page.locator("#scan-model").input_value() == "brain-tumor-cnn"

    page.set_input_files("#scan-file", str(junk))
    page.click("#scan-run")
    error = page.locator("#scan-file-error")
    error.wait_for(state="visible", timeout=20_000)
    assert "notes.png" in error.text_content() or "not a readable image" in error.text_content()
    assert page.locator("#scan-file").get_attribute("aria-invalid") == "true"

    page.set_input_files("#scan-file", str(scan))
    page.click("#scan-run")
    page.locator("#scan-result").wait_for(state="visible", timeout=30_000)
    assert not error.is_visible()
    assert page.locator("#scan-class").text_content() == expected
    bars = page.locator("#scan-bars li")
    assert bars.count() == len(data.class_names)
    assert page.locator("#scan-bars li.top").get_attribute("data-class") == expected
    values = [float(v) for v in page.locator("#scan-bars [role=meter]").evaluate_all(
        "els => els.map(e => e.getAttribute('aria-valuenow'))")]
    assert abs(sum(values) - 1) < 1e-4 and max(values) == values[data.class_names.index(expected)]
    page.wait_for_function("() => document.getElementById('scan-preview').naturalWidth === 64", timeout=10_000)

    assert not page.locator("#scan-verdict").is_visible()  # no detector chosen, no verdict

    # With a detector (the example plugin's, installed like any third-party one): its generated
    # parameter form appears, and the answer carries its verdict. It is fitted on first use, in
    # the server's background: the page says so and asks again when told to (503, Retry-After).
    page.select_option("#scan-detector", "example-max-softmax")
    fpr = page.locator("#k-example-max-softmax-fpr")
    assert fpr.is_visible() and fpr.input_value() == "0.05"
    page.click("#scan-run")
    page.wait_for_function("() => document.getElementById('scan-status').textContent.includes('Fitting the detector')",
                           timeout=10_000)
    verdict = page.locator("#scan-verdict")
    verdict.wait_for(state="visible", timeout=60_000)
    text = verdict.text_content()
    assert "example-max-softmax" in text and "score" in text and "threshold" in text
    assert text.startswith(("Flagged", "Not flagged"))

    shot = Path(os.environ.get("EGIDE_SCREENSHOT_DIR", tmp_path)) / "web-lab-scan.png"
    page.locator("#scan-card").screenshot(path=str(shot))
    assert [e for e in errors if "status of 422" not in e and "status of 503" not in e] == []
    page.close()
