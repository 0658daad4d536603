"""The HTML report: every section there and in order, sanity flags impossible to miss, user
strings escaped, no external reference, valid inline images and plots, and graceful output
for thin reports (no gallery, one epsilon, no C&W, a class absent from the split).

Reports are built directly from the dataclasses of `egide.lab.evaluation.pipeline` with small arrays, so
these tests run no attack; one tiny end-to-end test runs the real pipeline on the bars task.
"""

from __future__ import annotations

import base64
import io
import math
import re

import numpy as np
import pytest
from PIL import Image

from egide.lab.report.model import (
    AttackRun,
    GalleryItem,
    MinimalPerturbations,
    Report,
    SanityCheck,
    SuiteMember,
    SuiteReport,
    SuiteRun,
    eps_key,
)
from egide.lab.report.html import render_html

MRI_CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
MRI_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
SECTIONS = ("sanity", "robustness", "tables", "per-class", "gallery", "minimal", "config")
CW_TITLE = "Carlini & Wagner (L2)"


def make_report(
    classes=MRI_CLASSES,
    eps=MRI_EPS,
    attacks=("fgsm", "pgd", "bim"),
    n=48,
    size=16,
    gallery=4,
    cw=True,
    cw_succeeds=True,
    sanity=True,
    flagged=False,
    absent_class=None,
    model_name="mri_cnn",
    source="brain-tumor-phantom",
    seed=0,
) -> Report:
    """A consistent Report with made-up numbers: robust accuracy falls with eps and attack."""
    rng = np.random.default_rng(seed)
    classes = list(classes)
    present = [i for i, c in enumerate(classes) if c != absent_class]
    y = np.array([present[i % len(present)] for i in range(n)])
    clean_ok = rng.uniform(size=n) < 0.9
    score = rng.uniform(size=n)  # an image's robustness; attacks break the weakest first

    def per_class(ok):
        return {c: float(ok[y == i].mean()) if (y == i).any() else math.nan for i, c in enumerate(classes)}

    runs, worst, worst_pc = [], {}, {c: {} for c in classes}
    for k, e in enumerate(eps):
        together = clean_ok.copy()
        for a, name in enumerate(attacks):
            robust = clean_ok & (score > min(0.95, (k + 1) / (len(eps) + 1) * (1 + 0.15 * a)))
            together &= robust
            runs.append(_run(name, e, robust, y, per_class, rng))
        if attacks:  # the worst case is over the attacks that ran at this epsilon
            worst[eps_key(e)] = float(together.mean())
            for c, v in per_class(together).items():
                worst_pc[c][eps_key(e)] = v
    if cw:
        robust = clean_ok & (rng.uniform(size=n) > (0.97 if cw_succeeds else 0.0))
        runs.append(_run("cw", None, robust, y, per_class, rng, norm="2"))
    if sanity:
        runs.append(_run("pgd", 1.0, np.zeros(n, bool), y, per_class, rng, purpose="sanity"))
    checks = []
    if sanity:
        checks = [
            SanityCheck("iterative-at-least-as-strong-as-fgsm", True, "Iterative attacks are at least as strong as FGSM."),
            SanityCheck(
                "accuracy-falls-as-eps-grows",
                not flagged,
                "Accuracy does not fall at all as epsilon grows for pgd. Suspect gradient masking."
                if flagged
                else "Robust accuracy falls as epsilon grows, for every attack.",
            ),
            SanityCheck("unbounded-attacks-succeed", True, "Unbounded attacks break at least 95%."),
        ]
    items = []
    top = max(eps)
    for j in range(gallery):
        i = int(np.flatnonzero(clean_ok)[j])
        clean = rng.uniform(0.0, 1.0, (size, size, 1)).astype(np.float32)
        adv = np.clip(clean + top * np.sign(rng.normal(size=clean.shape)), 0, 1).astype(np.float32)
        label = classes[y[i]]
        flipped = j % 2 == 0
        items.append(
            GalleryItem(
                index=i, label=label, clean=clean, adversarial=adv,
                clean_pred=label, clean_confidence=0.97,
                adv_pred=classes[(y[i] + 1) % len(classes)] if flipped else label,
                adv_confidence=0.88, attack=attacks[-1], eps=top,
            )
        )
    cw_runs = [r for r in runs if r.attack == "cw"]
    minimal = [MinimalPerturbations("cw", CW_TITLE, "2", [float(v) for v in r.l2[~r.robust & clean_ok]])
               for r in cw_runs]
    return Report(
        config={
            "model": f"{model_name}.keras", "data": source, "split": "test",
            "attacks": [{"plugin": a, "params": {}} for a in attacks] + ([{"plugin": "cw", "params": {}}] if cw else []),
            "eps": list(eps), "limit": None, "seed": 0, "batch_size": 128, "clip": [0.0, 1.0],
            "gallery": gallery, "sanity_checks": sanity,
        },
        environment={
            "egide": "0.1.0", "tensorflow": "2.21.0", "keras": "3.15.1", "numpy": "2.4.6",
            "python": "3.11.7", "platform": "Linux-test", "plugins": {a: "0.1.0" for a in attacks},
        },
        model={"name": model_name, "input_shape": [size, size, 1], "num_classes": len(classes),
               "clip": [0.0, 1.0], "logits": "model output"},
        data={"source": source, "split": "test", "images": n, "class_names": classes,
              "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)}},
        clean_accuracy=float(clean_ok.mean()),
        clean_per_class=per_class(clean_ok),
        runs=runs,
        worst_case=worst,
        worst_case_per_class=worst_pc,
        minimal=minimal,
        sanity=checks,
        gallery=items,
        seconds=12.5,
    )


def _run(name, eps, robust, y, per_class, rng, norm="inf", purpose="evaluation") -> AttackRun:
    l2 = rng.uniform(0.2, 1.5, len(y)).astype(np.float32)
    return AttackRun(
        attack=name, eps=eps, params={"eps": eps, "steps": 10} if eps is not None else {"steps": 50},
        version="0.1.0", robust_accuracy=float(robust.mean()), success_rate=float(1 - robust.mean()),
        l2_mean=float(l2.mean()), linf_max=float(eps if eps is not None else 0.3), seconds=0.4,
        per_class=per_class(robust), robust=robust, l2=l2, norm=norm, purpose=purpose,
    )


def svgs(page: str) -> dict[str, str]:
    """Each inline SVG plot by the id of the section that holds it."""
    out = {}
    for section in re.finditer(r'<(?:section|footer) id="([\w-]+)">(.*?)</(?:section|footer)>', page, re.S):
        found = re.findall(r"<svg\b.*?</svg>", section.group(2), re.S)
        if found:
            out[section.group(1)] = found[0]
    return out


def png_uris(page: str) -> list[str]:
    return re.findall(r'src="(data:image/png;base64,[A-Za-z0-9+/=]+)"', page)


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(make_report())


# ---- structure --------------------------------------------------------------------------------
def test_every_section_is_present_in_reading_order(page):
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    positions = [page.index(f'id="{s}"') for s in SECTIONS]
    assert positions == sorted(positions)
    assert page.index("<header>") < positions[0]


def test_header_states_model_data_accuracy_environment_and_definition(page):
    report = make_report()
    header = page[page.index("<header>"):page.index('id="sanity"')]
    for text in ("mri_cnn", "16×16×1", "4 classes", "logits: model output", "brain-tumor-phantom",
                 "split test", "48 images", "glioma <span class=\"muted\">→ output 0</span> 12", "tensorflow 2.21.0", "keras 3.15.1",
                 "python 3.11.7", "12.50 s", f"{100 * report.clean_accuracy:.1f}%"):
        assert text in header, text
    assert "Robust accuracy</strong> is the share" in header


# ---- sanity checks ----------------------------------------------------------------------------
def test_a_flagged_sanity_check_cannot_be_missed():
    page = render_html(make_report(flagged=True))
    sanity = page[page.index('id="sanity"'):page.index('id="robustness"')]
    assert 'class="banner flag" role="alert"' in sanity
    assert "1 of 3 sanity checks flagged" in sanity
    flagged = re.search(r'<li class="check flag">.*?</li>', sanity, re.S).group(0)
    assert "FLAG" in flagged and "accuracy-falls-as-eps-grows" in flagged and "gradient masking" in flagged
    assert sanity.count('class="check pass"') == 2
    # and already in the header, before any number is read
    assert "1 of 3 sanity checks flagged" in page[:page.index('id="sanity"')]


def test_passing_checks_are_shown_as_passed(page):
    sanity = page[page.index('id="sanity"'):page.index('id="robustness"')]
    assert "All 3 sanity checks that ran passed" in sanity
    assert sanity.count('class="check pass"') == 3 and "banner flag" not in sanity


def test_sanity_checks_not_run_is_said():
    page = render_html(make_report(sanity=False))
    assert "Sanity checks were not run" in page and "sanity checks not run" in page
    assert "No unbounded sanity run" in page


# ---- safety of what users send ---------------------------------------------------------------
def test_user_strings_are_escaped():
    report = make_report(
        classes=("<script>alert(1)</script>", "men&ingioma", 'no"tumor', "pituitary"),
        model_name="<b>model</b>",
        source='/data/<img src=x onerror=alert(2)>.npz',
        attacks=("fgsm", "<i>evil</i>"),
    )
    page = render_html(report)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<b>model</b>" not in page and "&lt;b&gt;model&lt;/b&gt;" in page
    assert "<i>evil</i>" not in page and "&lt;i&gt;evil&lt;/i&gt;" in page
    assert "men&amp;ingioma" in page and "no&#34;tumor" in page and "no\"tumor" not in page


def test_no_external_reference_and_a_policy_that_forbids_any(page):
    for needle in ("http://", "https://", 'src="//', 'href="//', "@import", "<script", "<link"):
        assert needle not in page, needle
    assert not re.search(r"url\((?!#)", page), "a CSS url() that is not a fragment of the page"
    assert set(re.findall(r'(?:src|href)="([a-z]+):', page)) <= {"data"}
    assert "default-src 'none'" in page  # Content-Security-Policy: no fetch, no script


def test_matplotlib_dollar_signs_and_underscores_do_not_break_the_plot():
    page = render_html(make_report(attacks=("fgsm", "$pgd$", "_bim")))
    plot = svgs(page)["robustness"]
    assert "$pgd$" in plot and "_bim" in plot


# ---- plots --------------------------------------------------------------------------------------
def test_svg_plots_are_inline_and_name_the_attacks(page):
    plots = svgs(page)
    assert set(plots) == {"robustness", "minimal"}
    curve = plots["robustness"]
    for text in ("fgsm", "pgd", "bim", "worst case", "clean", "8/255", "1/255", "robust accuracy"):
        assert text in curve, text
    assert ">cw<" not in curve  # C&W has no epsilon: not on this plot
    assert "median" in plots["minimal"] and "mean" in plots["minimal"]
    ids = re.findall(r'\bid="([^"]+)"', "".join(plots.values()))
    assert len(ids) == len(set(ids)), "two plots share an element id"


def test_the_axis_uses_plain_numbers_when_eps_are_not_k_over_255():
    page = render_html(make_report(eps=(0.05, 0.1, 0.2)))
    curve = svgs(page)["robustness"]
    assert "/255" not in curve and ">0.05<" in curve and "input units" in curve
    # 0.2 is 51/255; it is still written as 0.2 beside 0.05 and 0.1
    assert "ε = 0.2" in page and "51/255" not in page


# ---- tables -----------------------------------------------------------------------------------
def test_tables_hold_every_run_the_worst_case_and_the_sanity_run_apart(page):
    report = make_report()
    tables = page[page.index('id="tables"'):page.index('id="per-class"')]
    assert "worst case (per sample)" in tables
    for key, value in report.worst_case.items():
        assert f"{100 * value:.1f}%" in tables
    assert "none (minimal L2)" in tables  # the C&W run
    sanity_part = tables[tables.index("Unbounded sanity run"):]
    assert "1 (whole range)" in sanity_part and "not a robustness number" in sanity_part
    evaluated = tables[:tables.index("Unbounded sanity run")]
    assert "whole range" not in evaluated
    for header in ("success rate", "mean L2", "max L∞", "time"):
        assert header in tables


def test_a_perturbation_over_budget_is_marked():
    report = make_report()
    report.runs[0].linf_max = report.runs[0].eps * 1.5
    page = render_html(report)
    assert 'class="num over"' in page and "&gt; ε!" in page


# ---- per class --------------------------------------------------------------------------------
def test_per_class_table_names_the_most_fragile_class():
    report = make_report()
    for key in report.worst_case:
        report.worst_case_per_class["meningioma"][key] = 0.0
        report.worst_case_per_class["glioma"][key] = 0.5
    page = render_html(report)
    part = page[page.index('id="per-class"'):page.index('id="gallery"')]
    assert "Most fragile class: <strong>meningioma</strong>, " in part
    for name in MRI_CLASSES:
        assert f"<th>{name}</th>" in part


def test_a_class_absent_from_the_split_shows_n_a():
    page = render_html(make_report(absent_class="pituitary"))
    part = page[page.index('id="per-class"'):page.index('id="gallery"')]
    row = re.search(r"<tr><th>pituitary</th>.*?</tr>", part, re.S).group(0)
    assert row.count(">n/a<") == 1 + len(MRI_EPS)  # clean and every epsilon
    assert "nan" not in part.lower().replace("n/a", "")


# ---- gallery ----------------------------------------------------------------------------------
def test_gallery_images_are_valid_png_data_uris(page):
    uris = png_uris(page)
    assert len(uris) == 3 * 4  # clean, adversarial, perturbation per item
    for uri in uris:
        image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert image.format == "PNG" and image.size == (16, 16) and image.mode == "L"
    assert "image-rendering:pixelated" in page.replace(" ", "")


def test_flips_are_red_and_held_predictions_are_not(page):
    cards = re.findall(r'<article class="card( flipped)?">(.*?)</article>', page, re.S)
    assert [bool(f) for f, _ in cards] == [True, False, True, False]
    flipped, held = cards[0][1], cards[1][1]
    assert 'class="badge flag">flipped' in flipped and 'class="wrong">meningioma 88.0%' in flipped
    assert 'class="badge pass">held' in held and 'class="wrong"' not in held


def test_the_perturbation_is_amplified_around_mid_grey_and_the_factor_said():
    report = make_report(gallery=1)
    item = report.gallery[0]
    item.clean = np.full((4, 4, 1), 0.5, np.float32)
    delta = np.zeros((4, 4, 1), np.float32)
    delta[0, 0], delta[1, 1] = 4 / 255, -2 / 255
    item.adversarial = item.clean + delta
    page = render_html(report)
    assert "×31.9" in page and "max |δ| = 4/255" in page  # 0.5 / (4/255)
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(png_uris(page)[2].split(",", 1)[1]))))
    assert image[0, 0] == 255 and image[1, 1] == 64 and image[2, 2] == 128


def test_rgb_images_are_shown_in_colour():
    report = make_report(gallery=1)
    report.gallery[0].clean = np.zeros((5, 7, 3), np.float32)
    report.gallery[0].adversarial = np.full((5, 7, 3), 0.1, np.float32)
    uri = png_uris(render_html(report))[0]
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.mode == "RGB" and image.size == (7, 5)


# ---- C&W ----------------------------------------------------------------------------------------
def test_cw_caption_gives_median_and_mean(page):
    report = make_report()
    values = report.minimal[0].values
    part = page[page.index('id="minimal-cw"'):page.index('id="config"')]
    assert "Carlini &amp; Wagner (L2)" in part
    assert f"median {np.median(values):.3g}" in part and f"mean {np.mean(values):.3g}" in part
    assert f"{len(values)} adversarial examples" in part


def test_cw_that_found_nothing_is_a_warning_not_a_blank():
    page = render_html(make_report(cw_succeeds=False))
    assert "Carlini &amp; Wagner (L2) ran but found no adversarial example" in page
    assert "minimal" not in svgs(page)


def test_every_minimal_perturbation_attack_gets_its_own_part_under_its_own_title():
    """No attack is special-cased by name: a third-party minimal attack (here an L-inf one) is
    shown beside C&W, titled as it declares itself, with its own histogram."""
    report = make_report()
    report.minimal.append(MinimalPerturbations("shortest-path", "Shortest <path> (L∞)", "inf",
                                               [0.01, 0.02, 0.03, 0.05]))
    page = render_html(report)
    part = page[page.index('id="minimal"'):page.index('id="config"')]
    assert 'id="minimal-cw"' in part and 'id="minimal-shortest-path"' in part
    assert "Shortest &lt;path&gt; (L∞)" in part and "smallest L∞ perturbation" in part
    assert part.count("<svg") == 2 and "median 0.025" in part


def test_no_minimal_perturbation_attack_is_said_not_left_blank():
    page = render_html(make_report(cw=False))
    assert "No minimal-perturbation attack was part of this evaluation" in page


def _suite(report, masking=False, left_out=True) -> SuiteReport:
    n = report.data["images"]
    robust = np.zeros(n, bool)
    robust[:5] = True
    broken_by = np.array(["apgd-ce"] * n, dtype=object)
    broken_by[:5] = ""
    broken_by[5:8] = "apgd-t"
    members = [
        SuiteMember("apgd-ce", "apgd-ce", "apgd", {"loss": "ce"}),
        SuiteMember("apgd-t", "apgd-t", "apgd", {"loss": "dlr-targeted"}),
        SuiteMember("fab-t", None if left_out else "fab-t", "fab", {},
                    note="fab-t: the 'fab' attack is not installed, so it was left out" if left_out else None),
        SuiteMember("square", "square", "square", {"queries": 5000}, black_box=True),
    ]
    run = SuiteRun(eps=MRI_EPS[-1], robust_accuracy=5 / n, after=[8 / n, 5 / n, 5 / n, 5 / n],
                   seconds=[1.0, 2.0, 0.0, 3.0], robust=robust, broken_by=broken_by,
                   masking="square (black-box, no gradients) lowered robust accuracy" if masking else None)
    return SuiteReport("standard", "standard", False, "inf", members, [run])


def test_the_suite_has_its_section_with_what_ran_and_who_broke_each_point():
    report = make_report()
    report.suite = _suite(report)
    page = render_html(report)
    part = page[page.index('id="suite"'):page.index('id="robustness"')]
    assert "Reference suite: standard" in part and "fab-t: the &#39;fab&#39; attack is not installed" in part
    assert "apgd-ce 40" in part and "apgd-t 3" in part  # broken first by
    assert "robust accuracy (suite + every attack)" in page[:page.index('id="sanity"')]
    assert 'href="#suite"' in page


def test_square_beating_the_gradient_attacks_is_flagged_in_the_suite():
    report = make_report()
    report.suite = _suite(report, masking=True, left_out=False)
    part = render_html(report).split('id="suite"')[1]
    assert 'class="banner flag" role="alert"' in part and "lowered robust accuracy" in part


# ---- footer -----------------------------------------------------------------------------------
def test_footer_holds_the_config_as_json_and_points_to_report_json(page):
    footer = page[page.index('id="config"'):]
    assert "&#34;sanity_checks&#34;: true" in footer and "&#34;eps&#34;: [" in footer
    assert "report.json" in footer and "egide evaluate --config" in footer


# ---- thin reports -----------------------------------------------------------------------------
DEGRADED = {
    "no gallery": dict(gallery=0),
    "one epsilon": dict(eps=(4 / 255,)),
    "no C&W": dict(cw=False),
    "absent class": dict(absent_class="notumor"),
    "no sanity checks": dict(sanity=False),
    "one attack": dict(attacks=("fgsm",)),
    "two classes": dict(classes=("benign", "malignant")),
    "everything thin": dict(gallery=0, eps=(0.03,), cw=False, sanity=False, absent_class="glioma", attacks=("pgd",)),
}


@pytest.mark.parametrize("changes", DEGRADED.values(), ids=DEGRADED.keys())
def test_thin_reports_render(changes):
    page = render_html(make_report(**changes))
    for section in SECTIONS:
        assert f'id="{section}"' in page
    assert "robustness" in svgs(page)
    assert "Traceback" not in page


def test_only_cw_no_bounded_attack():
    report = make_report(attacks=(), gallery=0)
    page = render_html(report)
    assert "No L∞-bounded attack ran" in page and svgs(page).keys() == {"minimal"}
    assert "n/a" in page[:page.index('id="sanity"')]  # no worst case to headline


def test_empty_report_renders():
    report = make_report(attacks=(), gallery=0, cw=False, sanity=False)
    report.worst_case, report.worst_case_per_class, report.config = {}, {}, {}
    report.data = {"images": 0}
    report.model = {}
    report.environment = {}
    report.clean_accuracy = math.nan
    page = render_html(report)
    assert all(f'id="{s}"' in page for s in SECTIONS) and not svgs(page)


def test_rendering_leaves_matplotlib_state_alone(page):
    import matplotlib

    before = dict(matplotlib.rcParams)
    render_html(make_report(gallery=0))
    assert dict(matplotlib.rcParams) == before


def test_rendering_is_deterministic_but_for_the_date():
    strip = lambda p: re.sub(r"rendered [\d:\- ]+UTC", "", p)  # noqa: E731
    assert strip(render_html(make_report())) == strip(render_html(make_report()))


# ---- the real pipeline, once ----------------------------------------------------------------
def test_end_to_end_on_the_bars_task(cnn_model, bars, tmp_path):
    from egide.lab.evaluation.pipeline import EvaluationConfig, evaluate
    from egide.lab.report.files import write_report

    _, _, x_test, y_test = bars
    cnn_model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x_test=x_test[:24], y_test=y_test[:24],
             class_names=np.array(["horizontal", "vertical", "diagonal"]))
    config = EvaluationConfig(
        model=str(tmp_path / "m.keras"), data=str(tmp_path / "d.npz"), eps=[0.1, 0.2], gallery=3,
        attacks=[{"plugin": "fgsm"}, {"plugin": "pgd", "params": {"steps": 5}},
                 {"plugin": "cw", "params": {"binary_search_steps": 1, "steps": 10}}],
    )
    paths = write_report(evaluate(config), tmp_path / "out")
    page = open(paths["report.html"], encoding="utf-8").read()
    assert all(f'id="{s}"' in page for s in SECTIONS)
    assert set(svgs(page)) >= {"robustness"} and len(png_uris(page)) == 9
    assert "http://" not in page and "https://" not in page
