"""The robustness card: what a review board files. On a user's own folder of scans and model file,
from the command line: HTML, PDF (a real one, rendered) and JSON; the numbers agree with the
evaluation they come from; a byte of the model file shows in its hash; the same run gives the same
card but for its date; a certified lower bound sits below the attacks' upper bound."""

from __future__ import annotations

import json
import shutil
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from egide.core.errors import InputError
from egide.lab.evaluation.evidence import negative_class, worst_case_predictions
from egide.lab.evaluation.pipeline import evaluate
from egide.lab.report.card import RobustnessCard
from egide.lab.report.card_build import budget_words, build_card
from egide.lab.report.files import json_safe
from egide.lab.report.identity import file_sha256


def _check_flips_match_accuracies(card: RobustnessCard) -> None:
    """Each flip matrix counts every evaluated image once; its diagonal is the images that held."""
    assert card.flips.clean.images == card.identity.images
    assert np.trace(card.flips.clean.counts) == card.accuracy.clean.k
    by_key = {b.key: b for b in card.accuracy.budgets}
    assert [t.key for t in card.flips.attacked] == list(by_key)
    for table in card.flips.attacked:
        counts = np.array(table.counts)
        assert counts.sum() == card.identity.images
        assert np.trace(counts) == by_key[table.key].robust.k
        assert counts.sum(axis=1).tolist() == [card.identity.class_counts[c] for c in table.classes]
        if card.flips.negative_class:
            k = table.classes.index(card.flips.negative_class)
            assert table.missed_findings == counts[:, k].sum() - counts[k, k]
            assert table.false_alarms == counts[k].sum() - counts[k, k]
            assert table.missed_findings + table.false_alarms + table.wrong_findings == counts.sum() - np.trace(counts)


def test_card_of_a_users_own_folder_from_the_command_line(study_folder, tmp_path, capsys):
    import pypdfium2

    from egide.lab.cli import _cmd_card, _parser, main

    model, scans = study_folder
    out = tmp_path / "study"
    code = main(["card", "--model", str(model), "--data", str(scans), "--split", "test", "--limit", "24",
                 "--attacks", "fgsm,pgd", "--eps", "2/255,8/255", "--negative-class", "notumor", "--no-progress",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "s beyond the evaluation" in printed and "Clean accuracy" in printed
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.html", "card.json", "card.html", "card.pdf"}

    card = RobustnessCard.model_validate_json((out / "card.json").read_text())
    assert card.identity.model_sha256 == file_sha256(model)
    assert len(card.identity.images_sha256) == 64 and card.identity.images == 24
    assert card.flips.negative_class == "notumor" and card.flips.negative_source == "declared"
    _check_flips_match_accuracies(card)
    assert card.accuracy.clean.n == 24 and card.accuracy.clean.small_sample  # 24 < 30: said so
    assert any("Only 24 images" in line for line in card.limitations)
    assert any("No detector was tested" in line for line in card.limitations)
    assert card.certification is None and any("--certify" in line for line in card.limitations)
    # Its words say what a budget is in pixel terms.
    assert card.threat_model.budgets[0].words.startswith("each pixel changed by at most 2 grey levels of 255")

    # The PDF opens in a standard reader's engine: its first page renders and reads the title.
    pdf = pypdfium2.PdfDocument(str(out / "card.pdf"))
    first = pdf[0]
    text = first.get_textpage().get_text_range()
    assert text.startswith("Robustness card: mine") and "Summary" in text and "notumor" in text
    image = first.render(scale=1).to_pil()
    image.save(tmp_path / "first-page.png")
    assert image.size[0] > 500 and (tmp_path / "first-page.png").stat().st_size > 10_000
    first.close()
    pdf.close()

    html = (out / "card.html").read_text()
    assert "<h1>Robustness card: mine</h1>" in html and "Content-Security-Policy" in html

    # The card again from the finished evaluation (no attack runs): the same card but its date.
    assert main(["card", "--report", str(out)]) == 0
    again = RobustnessCard.model_validate_json((out / "card.json").read_text())
    assert again.model_dump(exclude={"created"}) == card.model_dump(exclude={"created"})
    args = _parser().parse_args(["card", "--report", str(out), "--eps", "4/255"])
    with pytest.raises(InputError, match="--eps would choose a new one"):
        _cmd_card(args)
    report = json.loads((out / "report.json").read_text())
    with pytest.raises(InputError, match="'tumour' is not one of the model's classes"):
        build_card(report, negative_class="tumour")


def _with_zip_comment(source, path, comment: bytes):
    shutil.copy(source, path)
    with zipfile.ZipFile(path, "a") as archive:  # a .keras file is a zip; its comment is free text
        archive.comment = comment
    return path


def test_the_card_names_the_model_by_its_bytes_and_repeats_but_for_its_date(study_folder, tmp_path):
    model, scans = study_folder
    a = _with_zip_comment(model, tmp_path / "a.keras", b"a")
    b = _with_zip_comment(model, tmp_path / "b.keras", b"b")
    first, second = a.read_bytes(), b.read_bytes()
    assert len(first) == len(second) and sum(x != y for x, y in zip(first, second)) == 1

    def card_of(path, batch_size):
        report = evaluate({"model": str(path), "data": str(scans), "split": "test", "limit": 12,
                           "attacks": [{"plugin": "fgsm"}, {"plugin": "pgd", "params": {"steps": 5}}],
                           "eps": ["4/255"], "batch_size": batch_size, "gallery": 0})
        return build_card(json_safe(report.to_dict()))

    once, twice = card_of(a, 5), card_of(a, 5)
    assert once.created and once.model_dump(exclude={"created"}) == twice.model_dump(exclude={"created"})
    other = card_of(b, 12)
    assert once.identity.model_sha256 == file_sha256(a) != other.identity.model_sha256 == file_sha256(b)
    assert other.identity.images_sha256 == once.identity.images_sha256
    # One config, one result: another batch size changes no number and no flip.
    assert other.accuracy == once.accuracy and other.flips == once.flips


def test_certified_lower_bound_sits_below_the_attacks_upper_bound(tmp_path):
    from egide.lab.evaluation.certification import certify_evaluation
    from egide.lab.report.card_layout import Table, layout

    report = json_safe(evaluate({"limit": 8, "norm": "2", "eps": [0.5], "gallery": 0, "sanity_checks": False,
                                 "attacks": [{"plugin": "pgd", "params": {"steps": 10}}],
                                 "defenses": [{"plugin": "randomized-smoothing", "params": {"sigma": 0.25}}],
                                 "eot_samples": 2}).to_dict())
    cert = certify_evaluation(report, samples=200, n0=20)
    assert cert.sigma == 0.25 and cert.n == 200 and cert.abstained.n == 8
    [radius] = cert.radii
    assert radius.key == "0.5" and radius.radius == 0.5  # an L2 budget is its own radius
    assert radius.attack_bound is not None and radius.certified.k <= radius.attack_bound.k
    card = build_card(report, certification=cert)
    assert any(line.startswith("Certified lower bound, for the smoothed model (randomized smoothing, σ = 0.25")
               for line in card.summary)
    tables = [b for b in layout(card) if isinstance(b, Table) and "Lower bound: certified" in b.header]
    assert len(tables) == 1 and tables[0].rows[0][0] == "0.5"

    tampered = {**report, "data": {**report["data"], "images_sha256": "0" * 64}}
    with pytest.raises(InputError, match="not the ones the evaluation took"):
        certify_evaluation(tampered, samples=10, n0=5)


def test_the_negative_class_is_declared_or_a_binary_models_class_0():
    names = ["glioma", "meningioma", "notumor", "pituitary"]
    assert negative_class("notumor", None, names) == {"name": "notumor", "source": "declared"}
    assert negative_class(None, "notumor", names)["source"] == "declared by the data set"
    assert negative_class(None, None, names) == {"name": None, "source": "not declared"}
    assert negative_class(None, None, ["benign", "malignant"])["name"] == "benign"
    with pytest.raises(InputError, match="'tumour' is not one of the classes"):
        negative_class("tumour", None, names)


def test_worst_case_class_is_the_first_attack_that_broke_the_image():
    y = np.array([0, 1, 2, 0])
    clean = np.array([0, 1, 2, 2])  # the last image was wrong before any attack
    suite_run = SimpleNamespace(broken_by=np.array(["", "apgd-ce", "", ""], dtype=object), adv_pred=np.array([0, 2, 2, 0]))
    suite = SimpleNamespace(at=lambda eps: suite_run)
    fgsm = SimpleNamespace(eps=0.5, norm="inf", adv_pred=np.array([1, 0, 2, 1]))
    pgd = SimpleNamespace(eps=0.5, norm="inf", adv_pred=np.array([2, 0, 0, 1]))
    other_norm = SimpleNamespace(eps=0.5, norm="2", adv_pred=np.array([3, 3, 3, 3]))
    got = worst_case_predictions([fgsm, pgd, other_norm], suite, [0.5], "inf", clean, y)
    # image 0: fgsm first (1); image 1: the suite (2); image 2: pgd (0); image 3: its clean mistake (2).
    assert got == {"0.5": [1, 2, 0, 2]}


def test_a_report_from_before_cards_is_a_clear_error():
    with pytest.raises(InputError, match="made before robustness cards existed"):
        build_card({"config": {}, "per_image": {}})


def test_budgets_in_pixel_terms():
    assert budget_words(4 / 255, "inf", [64, 64, 1], [0.0, 1.0]) == "each pixel changed by at most 4 grey levels of 255"
    assert "in the model's units [0, 255]" in budget_words(4 / 255, "inf", [64, 64, 1], [0.0, 255.0])
    l2 = budget_words(0.5, "2", [64, 64, 1], [0.0, 1.0])
    assert "4,096 values" in l2 and "1.99 grey levels of 255 per pixel" in l2  # 0.5 / 64 * 255
    assert "2,040 grey levels of 255 in all" in budget_words(8.0, "1", [64, 64, 1], [0.0, 1.0])
