"""lab/services.py: what the command line and the server both do, one behaviour for both."""

from types import SimpleNamespace

import numpy as np
import pytest

from egide.core.errors import InputError
from egide.lab import services

NAMES = ("glioma", "meningioma", "notumor")
Y = np.array([0, 1, 2, 2])


@pytest.mark.parametrize("spec, expected", [
    (None, [1, 2, 0, 0]),  # a targeted attack with no target aims at the next class
    ("next", [1, 2, 0, 0]),
    ("notumor", [2, 2, 2, 2]),
    (1, [1, 1, 1, 1]),
    ("1", [1, 1, 1, 1]),
])
def test_targets_of_a_targeted_attack(spec, expected):
    assert services.targets(spec, Y, NAMES, targeted=True).tolist() == expected


@pytest.mark.parametrize("spec, message", [
    (3, "neither a class index (0..2)"),
    ("pituitary", "glioma, meningioma, notumor"),
    (True, "neither a class index"),
])
def test_a_target_that_is_no_class_names_the_classes(spec, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        services.targets(spec, Y, NAMES, targeted=True)


def test_an_untargeted_attack_takes_no_target_and_says_so():
    assert services.targets(None, Y, NAMES, targeted=False) is None
    with pytest.raises(InputError, match="untargeted attack.*targeted=True"):
        services.targets("next", Y, NAMES, targeted=False)


@pytest.mark.parametrize("text, value", [("4/255", 4 / 255), ("0.5", 0.5), (" 1 ", 1.0)])
def test_numbers_as_people_write_them(text, value):
    assert services.parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["4/0", "four", "1/x"])
def test_a_bad_number_shows_both_forms(text):
    with pytest.raises(InputError, match="0.0157 or 4/255"):
        services.parse_number(text)


def test_an_input_range_must_rise():
    assert services.parse_range("0,255") == (0.0, 255.0)
    assert services.parse_range("auto") is None and services.parse_range(None) is None
    for bad in ("1,0", "0,inf", "0,nan"):
        with pytest.raises(InputError, match="LOW must be below HIGH"):
            services.parse_range(bad)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("::1", True), ("localhost", True), ("fe80::1%eth0", False),
    ("0.0.0.0", False), ("10.0.0.2", False), ("example.org", False), (None, False),
])
def test_loopback(host, loopback):
    assert services.is_loopback(host) is loopback


def test_an_exposed_server_needs_a_token():
    services.check_exposure("127.0.0.1", None)
    services.check_exposure("0.0.0.0", "secret")
    with pytest.raises(InputError, match="refusing to bind 0.0.0.0 without a token"):
        services.check_exposure("0.0.0.0", None)


def test_the_preselected_pair_is_what_a_model_declares():
    """No demo name in the code: a model plugin names its data set, and that pair is chosen."""
    models = [SimpleNamespace(name="a-model"), SimpleNamespace(name="z-model", dataset="z-data")]
    data = [SimpleNamespace(name="a-data"), SimpleNamespace(name="z-data")]
    assert services.default_pair(models, data) == ("z-model", "z-data")
    assert services.default_pair(models[:1], data) == ("a-model", "a-data")
    assert services.default_pair([], []) == (None, None)


def test_the_demo_model_declares_its_data_set(registry):
    assert registry.get("model", "brain-tumor-cnn").dataset == "brain-tumor-phantom"
    pair = services.default_pair(registry.plugins("model"), registry.plugins("dataset"))
    assert pair == ("brain-tumor-cnn", "brain-tumor-phantom")
