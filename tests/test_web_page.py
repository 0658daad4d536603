"""The lab page in a real browser against a real server: `egide serve` runs as a subprocess,
headless Chromium (through Playwright) drives the page. The attack form is generated from the
plugin's schema, follows the attack chosen, shows the server's 422 message at the field, and a
small FGSM job runs to done with its numbers and images on screen. Leaves a screenshot.

Needs the `playwright` Python package and the system Chromium at /usr/bin/chromium, like
tests/test_report_browser.py: skipped locally without them, an error in CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from browser import launch_chromium, browser_test
from egide.lab.server_process import running_server

pytestmark = browser_test


class Server(str):
    """The server's base URL (a str, as the tests use it), with its instance folder."""

    def __new__(cls, base: str, instance: Path):
        self = super().__new__(cls, base)
        self.instance = instance
        return self


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("web-instance")) as running:
        yield Server(running.url, running.instance)


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
    eps = page.locator("#attack-form").get_by_role("textbox", name="Eps", exact=True)  # hidden fieldsets are not in the a11y tree
    # A budget is a text box that takes fractions, and shows its default as one.
    assert eps.is_visible() and eps.get_attribute("type") == "text" and eps.input_value() == "8/255"
    assert "Perturbation budget" in page.locator("#p-fgsm-eps-help").text_content()
    assert "4/255" in page.locator("#p-fgsm-eps-help").text_content()
    norm = page.locator("#p-fgsm-norm")
    assert norm.evaluate("e => e.tagName") == "SELECT"
    assert norm.locator("option").all_text_contents() == ["inf", "2"]
    targeted = page.locator("#attack-form").get_by_role("checkbox", name="Targeted")
    assert targeted.get_attribute("type") == "checkbox" and not targeted.is_checked()

    # Switching the attack switches the fields.
    page.select_option("#attack", "pgd")
    assert page.locator("#p-pgd-steps").is_visible() and page.locator("#p-pgd-restarts").is_visible()
    assert not page.locator("#p-fgsm-eps").is_visible()
    assert page.locator("#p-pgd-step_size").get_attribute("placeholder") == "automatic"  # optional
    page.select_option("#attack", "fgsm")
    assert page.locator("#p-fgsm-eps").is_visible() and not page.locator("#p-pgd-steps").is_visible()

    # A defense in front of the model: its generated form and the adaptive-attack choice appear
    # only when one is chosen (whichever preprocessing defenses are installed).
    if page.locator("#defense").count():
        assert not page.locator("#defense-adaptive").is_visible()
        name = page.locator("#defense option").nth(1).get_attribute("value")
        page.select_option("#defense", name)
        assert page.locator(f"#defense-params-{name}").is_visible() and page.locator("#defense-adaptive").is_checked()
        page.select_option("#defense", "")
        assert not page.locator(f"#defense-params-{name}").is_visible()

    # An invalid value: the server's 422 message appears at the field.
    eps.fill("-0.5")
    page.click("#attack-run")
    error = page.locator("#p-fgsm-eps-error")
    error.wait_for(state="visible", timeout=10_000)
    assert "greater than 0" in error.text_content()
    assert eps.get_attribute("aria-invalid") == "true"
    page.locator("#params-fgsm").screenshot(path=str(Path(os.environ.get("EGIDE_SCREENSHOT_DIR", tmp_path)) / "web-lab-invalid.png"))

    # A small FGSM job runs to done; its numbers and images appear. The budget as a fraction.
    eps.fill("4/255")
    page.fill("#attack-limit", "8")
    page.click("#attack-run")
    assert not error.is_visible()
    page.locator("#attack-state.done").wait_for(timeout=60_000)
    page.locator("#attack-result").wait_for(state="visible")
    metrics = page.locator("#attack-metrics").text_content()
    assert "Robust accuracy" in metrics and "Success rate" in metrics and "Mean L2" in metrics
    # The gallery: per example the clean, adversarial and amplified-perturbation images, each
    # loaded (decoded by the browser), with the predicted labels and confidences.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#attack-gallery img')].every(i => i.complete && i.naturalWidth > 0)"
        " && document.querySelectorAll('#attack-gallery img').length === 18",
        timeout=10_000,
    )
    card = page.locator("#attack-gallery figure").first
    assert [i.get_attribute("data-role") for i in card.locator("img").all()] == ["clean", "adversarial", "perturbation"]
    assert card.locator("img").evaluate_all("els => els.map(e => e.naturalWidth)") == [64, 64, 64]
    captions = card.locator(".pred").all_text_contents()
    assert captions[0].startswith("clean → ") and captions[0].endswith("%")
    assert captions[1].startswith("adv. → ") and captions[1].endswith("%")
    assert captions[2].startswith("perturbation ±")
    assert "true: " in card.locator("figcaption").text_content()
    assert "predicted" in card.locator("img").first.get_attribute("alt")

    # The evaluation panel: one attack, one epsilon; its report links appear when done.
    page.uncheck("#eval-form input[value=pgd]")
    page.check("#eval-form input[name=detectors][value=example-max-softmax]")  # the test plugin's
    page.fill("#eval-eps", "4/255")
    page.fill("#eval-limit", "8")
    page.click("#eval-run")
    page.locator("#eval-state.done").wait_for(timeout=60_000)
    # The report is served by the server at a URL that lasts (no token here): not a blob.
    page.wait_for_function("() => document.getElementById('eval-report').href.includes('/artifacts/report.html')",
                           timeout=10_000)
    metrics = page.locator("#eval-metrics").text_content()
    assert "Worst case at 4/255" in metrics
    assert "example-max-softmax guarded at 4/255 (adaptive / non-adaptive)" in metrics
    # The accuracy-versus-epsilon plot is drawn (a decoded image), next to the full report's link.
    page.wait_for_function("() => document.getElementById('eval-plot').naturalWidth > 0", timeout=10_000)
    assert page.locator("#eval-figure").is_visible()
    assert "full report" in page.locator("#eval-report").text_content()
    # The robustness card's link, and the card itself opened in the browser.
    card_url = page.locator("#eval-card").get_attribute("href")
    assert card_url.endswith("/artifacts/card.html")
    assert page.locator("#eval-card-pdf").get_attribute("href").endswith("/artifacts/card.pdf")
    # The detector's ROC curve is drawn too.
    page.wait_for_function("() => [...document.querySelectorAll('#eval-rocs img')].some(i => i.naturalWidth > 0)",
                           timeout=10_000)
    assert page.locator("#eval-rocs img").get_attribute("data-detector") == "example-max-softmax"

    shot = Path(os.environ.get("EGIDE_SCREENSHOT_DIR", tmp_path)) / "web-lab.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    page.locator("#attack-result").screenshot(path=str(shot.with_name("web-lab-gallery.png")))

    card = browser.new_page()
    card.goto(server + card_url if card_url.startswith("/") else card_url)
    assert card.locator("h1").text_content().startswith("Robustness card: ")
    summary = card.locator("ul").first.text_content()
    assert "Tested: the model" in summary and "Clean accuracy" in summary and "95% CI" in summary
    card.close()

    # Chromium logs every 4xx answer as a console error: the one 422 above is expected.
    assert [e for e in errors if "status of 422" not in e] == []
    assert all(u.startswith((server, "blob:", "data:")) for u in requests), requests
    page.close()


# What the page's keyboard and layout checks read from the DOM.
VISIBLE_CONTROLS = """() => [...document.querySelectorAll('input, select, button, a[href], textarea, summary')]
    .filter(e => e.offsetParent !== null && !e.disabled && e.tabIndex >= 0 && e.getAttribute('aria-hidden') !== 'true'
                 && !(e.parentElement.closest('details:not([open])') && e.tagName !== 'SUMMARY'))"""
UNLABELLED = "() => (" + VISIBLE_CONTROLS + """)().filter(e => {
    if (e.tagName === 'A' || e.tagName === 'BUTTON' || e.tagName === 'SUMMARY') return !(e.textContent.trim() || e.getAttribute('aria-label'));
    return !((e.labels && e.labels.length) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby'));
}).map(e => e.outerHTML.slice(0, 120))"""
FOCUSED = "() => { const all = (" + VISIBLE_CONTROLS + """)(), e = document.activeElement, s = getComputedStyle(e);
    return {index: all.indexOf(e), key: e.id || e.name || e.textContent.trim().slice(0, 30), tag: e.tagName,
            ring: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2}; }"""


def test_the_page_works_by_keyboard_on_a_laptop_screen(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(server + "/", wait_until="load")
    page.locator("#jobs-list li").first.wait_for()
    page.evaluate("() => { document.getElementById('uploads').open = true; }")  # its forms are checked too

    # Every visible control has a label (a <label>, aria-label, or its own text).
    assert page.evaluate(UNLABELLED) == []

    # Tab reaches every visible control, each with a visible focus ring.
    wanted = page.evaluate("() => (" + VISIBLE_CONTROLS + ")().length")
    reached, no_ring = set(), []
    page.locator("body").focus()
    for _ in range(wanted + 5):
        page.keyboard.press("Tab")
        f = page.evaluate(FOCUSED)
        if f["tag"] == "BODY":
            break
        reached.add(f["index"])
        if not f["ring"]:
            no_ring.append(f["key"])
    missed = page.evaluate("(reached) => (" + VISIBLE_CONTROLS + ")().filter((e, i) => !reached.includes(i))"
                           ".map(e => e.outerHTML.slice(0, 120))", sorted(reached))
    assert missed == [] and -1 not in reached
    assert no_ring == []

    # Readable on a laptop screen: nothing wider than the window, the two panels side by side.
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    attack_box = page.locator("#attack-title").bounding_box()
    eval_box = page.locator("#eval-title").bounding_box()
    assert eval_box["x"] > attack_box["x"] + 300 and abs(eval_box["y"] - attack_box["y"]) < 5
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(Path(os.environ.get("EGIDE_SCREENSHOT_DIR", tmp_path)) / "web-lab-laptop.png"))
    page.close()


def test_an_interrupted_job_is_rerun_from_the_page(server, browser):
    """A job the server never finished (as after a restart) shows as interrupted with a Re-run
    button; re-running it shows the new job's progress and results in its panel."""
    from egide.web.jobs import JobStore

    store = JobStore(Path(server.instance) / "jobs.sqlite3")
    job_id = store.create("attack", {"kind": "attack", "plugin": "fgsm", "params": {"eps": 0.0157},
                                     "model": "brain-tumor-cnn", "data": "brain-tumor-phantom",
                                     "split": "test", "limit": 4, "batch_size": 128, "seed": 0,
                                     "target": None, "defense": None})
    store.mark_interrupted()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server + "/", wait_until="load")
    row = page.locator(f"#jobs-list li[data-job='{job_id}']")
    row.wait_for()
    assert row.get_attribute("data-state") == "interrupted"
    button = row.get_by_role("button", name="Re-run interrupted attack fgsm on brain-tumor-cnn")
    button.focus()
    page.keyboard.press("Enter")
    page.locator("#attack-state.done").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('#attack-gallery figure').length === 4", timeout=10_000)
    page.locator("#jobs-list li[data-state='done']").first.wait_for()
    page.close()


def test_a_trainer_from_its_generated_form_adds_a_model(server, browser):
    """"Train a defense": the first installed trainer, from its generated form, trains a small
    model; the new model joins the model lists, ready to be attacked or classified with."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server + "/", wait_until="load")
    assert page.locator("#trainer").count(), "the built-in trainers are missing from the page"
    trainer = page.locator("#trainer").input_value()
    form = page.locator(f"#trainer-params-{trainer}")
    for param, value in (("epochs", "1"), ("steps", "1"), ("val_steps", "1"), ("batch_size", "32")):
        field = form.locator(f".field[data-param='{param}'] input")
        if field.count():  # a trainer without it keeps its own default
            field.fill(value)
    page.fill("#defend-limit", "32")
    models_before = page.locator("#model option").count()
    page.click("#defend-run")
    page.locator("#defend-state.done").wait_for(timeout=180_000)
    metrics = page.locator("#defend-metrics").text_content()
    assert "New model" in metrics and "Validation accuracy" in metrics
    assert page.locator("#model option").count() == models_before + 1
    new = page.locator("#model option").last.get_attribute("value")
    assert new.startswith("upload-") and page.locator(f"#scan-model option[value='{new}']").count() == 1
    page.wait_for_function("() => document.getElementById('defend-model').href.startsWith('blob:')", timeout=10_000)
    page.close()


def upload(page, kind: str, path=None) -> None:
    """Send the page's upload form of `kind` ("model" or "data"), with `path` chosen when given,
    and wait until the server has checked and added it."""
    if path is not None:
        page.set_input_files(f"#{kind}-file", str(path))
    page.click(f"#{kind}-upload-run")
    page.wait_for_function(f"() => document.getElementById('{kind}-upload-status').textContent.startsWith('Added')",
                           timeout=60_000)


def test_your_own_model_and_scans_are_uploaded_from_the_page_and_attacked(server, browser, bars, cnn_model,
                                                                           tmp_path):
    """"Use your own model or scans": a .keras file and a zip of class folders of PNG scans are
    uploaded from the page, checked by the server (a wrong class count is refused at its field),
    chosen in the lists, and attacked."""
    import io
    import zipfile

    from PIL import Image

    from egide.lab.training import save_model
    from examples.bars import CLASSES

    model_path = save_model(cnn_model, tmp_path / "bars.keras")
    _, _, x_test, y_test = bars
    scans = tmp_path / "bars-scans.zip"
    with zipfile.ZipFile(scans, "w") as archive:
        for i in range(12):
            png = io.BytesIO()
            Image.fromarray((x_test[i, :, :, 0] * 255).round().astype("uint8")).save(png, format="PNG")
            archive.writestr(f"{CLASSES[y_test[i]]}/scan-{i}.png", png.getvalue())

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/", wait_until="load")
    page.click("#uploads summary")
    page.set_input_files("#model-file", str(model_path))
    page.fill("#model-class-names", "horizontal, vertical")
    page.click("#model-upload-run")
    error = page.locator("#model-class-names-error")
    error.wait_for(state="visible", timeout=60_000)
    assert "3 classes, 2 names given" in error.text_content()
    assert page.locator("#model-class-names").get_attribute("aria-invalid") == "true"

    page.fill("#model-class-names", ", ".join(CLASSES))
    upload(page, "model")
    assert not error.is_visible()
    status = page.locator("#model-upload-status").text_content()
    assert "input 8×8×1, 3 classes, pixels 0–1" in status
    chosen = page.locator("#model").input_value()
    assert chosen.startswith("upload-") and page.locator(f"#scan-model option[value='{chosen}']").count() == 1

    upload(page, "data", scans)
    assert "12 images of 3 classes" in page.locator("#data-upload-status").text_content()
    assert page.locator("#data").input_value().startswith("upload-")
    page.locator("#uploads").screenshot(path=str(Path(os.environ.get("EGIDE_SCREENSHOT_DIR", tmp_path)) / "web-uploads.png"))

    # The uploaded model attacked on the uploaded scans.
    page.fill("#attack-limit", "8")
    page.click("#attack-run")
    page.locator("#attack-state.done").wait_for(timeout=60_000)
    assert "Robust accuracy" in page.locator("#attack-metrics").text_content()
    assert errors == []
    page.close()


def test_your_study_with_detectors_from_the_page_and_its_result_after_a_reload(server, browser, study_folder,
                                                                              study_zip):
    """A folder of class folders without a val split, from the page: detectors fitted on images held
    out of the evaluated split; an evaluation with no attack ticked is refused at the attacks; the
    finished job's result and report open again from the recent jobs after a reload."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/", wait_until="load")
    page.click("#uploads summary")
    page.fill("#model-class-names", "glioma, meningioma, notumor, pituitary")
    upload(page, "model", study_folder[0])
    upload(page, "data", study_zip)
    page.select_option("#split", "Testing")
    # Only the data's own splits (and "automatic") are offered to fit the detectors on.
    options = page.locator("#eval-fit-split option").all_text_contents()
    assert options[0].startswith("automatic") and options[1:] == ["Testing", "Training"]

    for name in page.locator("#eval-form input[name=attacks]").evaluate_all("els => els.map(e => e.value)"):
        page.uncheck(f"#eval-form input[name=attacks][value={name}]")
    page.click("#eval-run")
    attacks_error = page.locator("#eval-attacks-error")
    attacks_error.wait_for(state="visible", timeout=5_000)
    assert "tick at least one attack" in attacks_error.text_content()
    assert not page.locator("#eval-error").is_visible()

    page.check("#eval-form input[name=attacks][value=fgsm]")
    page.check("#eval-form input[name=detectors][value=feature-squeezing]")
    page.uncheck("#eval-adaptive")
    page.fill("#eval-eps", "4/255")
    page.fill("#eval-limit", "40")
    page.click("#eval-run")
    assert not attacks_error.is_visible()
    page.locator("#eval-state.done").wait_for(timeout=180_000)
    metrics = page.locator("#eval-metrics").text_content()
    assert "40 of 120 images, a seeded sample stratified by class (seed 0): glioma 10" in metrics
    assert "80 images held out of the evaluated 'Testing' split" in metrics
    assert "n/a" in metrics  # one ε: the trend check could not run, and says so

    page.reload(wait_until="load")
    job = page.locator("#jobs-list li[data-state=done]").first
    job.wait_for(timeout=10_000)
    report_href = job.get_by_text("Report").get_attribute("href")
    assert report_href.endswith("/artifacts/report.html")
    job.get_by_text("Result").click()
    page.locator("#eval-result").wait_for(state="visible", timeout=10_000)
    assert "held out of the evaluated 'Testing' split" in page.locator("#eval-metrics").text_content()
    assert "?job=" in page.url
    page.goto(page.url, wait_until="load")  # the bookmark: the same result, after a reload
    page.locator("#eval-result").wait_for(state="visible", timeout=10_000)
    report = page.request.get(server + report_href)
    assert report.status == 200 and "held out of the evaluated" in report.text()
    assert errors == []
    page.close()


def test_an_onnx_model_is_uploaded_from_the_page_converted_and_attacked(server, browser, tmp_path):
    """A PyTorch-style export: the demo network as an NCHW ONNX file, through the same upload form."""
    pytest.importorskip("onnx2keras", reason="the onnx extra")
    from onnx_models import demo_as_onnx

    import egide

    path = demo_as_onnx(egide.Classifier.load("brain-tumor-cnn").model, tmp_path / "exported.onnx")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/", wait_until="load")
    page.click("#uploads summary")
    page.fill("#model-class-names", "glioma, meningioma, notumor, pituitary")
    page.fill("#model-normalize", "0.5/0")  # a zero std: refused at the field
    page.set_input_files("#model-file", str(path))
    page.click("#model-upload-run")
    error = page.locator("#model-normalize-error")
    error.wait_for(state="visible", timeout=60_000)
    assert "every std positive" in error.text_content()
    page.fill("#model-normalize", "")
    upload(page, "model")
    status = page.locator("#model-upload-status").text_content()
    assert "input 64×64×1, 4 classes" in status and "converted from ONNX" in status and "onnxruntime" in status
    page.select_option("#data", "brain-tumor-phantom")
    page.fill("#attack-limit", "8")
    page.click("#attack-run")
    page.locator("#attack-state.done").wait_for(timeout=60_000)
    assert "Robust accuracy" in page.locator("#attack-metrics").text_content()
    assert errors == []
    page.close()


def test_a_volume_model_and_a_zip_of_nifti_volumes_are_uploaded_attacked_and_a_volume_classified(
        server, browser, rods_model_file, tmp_path):
    """Whole volumes from the page: a Conv3D .keras model and a zip of NIfTI volumes (one class
    folder each, another grid than the model's) are uploaded and attacked, the pictures being each
    volume's three mid-slices; then one NIfTI volume is classified from the scan form."""
    import zipfile

    import nibabel
    import numpy as np

    from examples.rods import CLASSES, SIZE, make_rods

    x, y = make_rods(8, seed=4)
    fine = np.repeat(np.repeat(np.repeat(x[..., 0], 2, 1), 2, 2), 2, 3)  # 20^3 voxels of 0.5 mm
    scans = tmp_path / "rods-volumes.zip"
    with zipfile.ZipFile(scans, "w") as archive:
        for i, (volume, label) in enumerate(zip(fine, y)):
            data = volume[:, ::-1, ::-1].transpose(2, 1, 0) * 1000.0  # display (z, y, x) -> NIfTI (x, y, z)
            path = tmp_path / f"{i}.nii.gz"
            nibabel.save(nibabel.Nifti1Image(data.astype(np.float32), np.diag([0.5, 0.5, 0.5, 1.0])), str(path))
            archive.write(path, f"{CLASSES[label]}/{i}.nii.gz")

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/", wait_until="load")
    page.click("#uploads summary")
    page.fill("#model-class-names", ", ".join(CLASSES))
    upload(page, "model", rods_model_file)
    assert f"input {SIZE}×{SIZE}×{SIZE}×1, 3 classes" in page.locator("#model-upload-status").text_content()
    upload(page, "data", scans)
    assert page.locator("#data").input_value().startswith("upload-")

    page.select_option("#attack", "pgd")
    page.locator("#attack-form").get_by_role("textbox", name="Eps", exact=True).fill("0.1")
    page.fill("#attack-limit", "8")
    page.click("#attack-run")
    page.locator("#attack-state.done").wait_for(timeout=120_000)
    assert "Robust accuracy" in page.locator("#attack-metrics").text_content()
    picture = page.locator("#attack-result img").first
    picture.wait_for(state="visible", timeout=10_000)
    # Axial, coronal and sagittal mid-slices side by side: three squares and two gaps wide.
    width, height = picture.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert (width, height) == (3 * SIZE + 4, SIZE)
    shown = picture.bounding_box()  # shown at its own proportions, not squeezed into a square
    assert abs(shown["width"] / shown["height"] - width / height) < 0.05
    # And the axial slice the attack changed most, on its own.
    note = page.locator("#attack-gallery .slice-note").first
    assert "the one the attack changed most" in note.text_content()
    page.locator("#attack-gallery img[data-role=perturbation-slice]").first.wait_for(state="visible")
    assert page.locator("#attack-gallery img[data-role=perturbation-slice]").first.evaluate(
        "i => [i.naturalWidth, i.naturalHeight]") == [SIZE, SIZE]

    page.select_option("#scan-model", page.locator("#model").input_value())
    page.set_input_files("#scan-file", str(tmp_path / "0.nii.gz"))
    page.click("#scan-run")
    page.locator("#scan-result").wait_for(state="visible", timeout=60_000)
    assert page.locator("#scan-class").text_content() in CLASSES
    assert page.locator("#scan-resized").text_content().startswith(f"Resized from 20×20×20 to {SIZE}×{SIZE}×{SIZE}")
    page.locator("#attack-result").screenshot(path=str(Path(os.environ.get("EGIDE_SCREENSHOT_DIR", tmp_path))
                                                       / "web-volumes.png"))
    assert errors == []
    page.close()
