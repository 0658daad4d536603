"""Preprocessing defenses: what each transform does, BPDA/EOT views, certification, bad params."""

import numpy as np
import pytest
import tensorflow as tf
from pydantic import BaseModel
from scipy import ndimage
from scipy.stats import norm

import egide
from egide.core import InputError, ParameterError, PreprocessedClassifier, Preprocessor
from egide.testing import ConformanceError, plugin_checks

PREPROCESSORS = ["bit-depth", "median-filter", "jpeg", "gaussian-noise", "randomized-smoothing"]


def transform(registry, name, x, clip=(0.0, 1.0), seed=0, **params):
    pre = registry.create("defense", name, **params)
    return pre.transform(tf.constant(x), tf.random.Generator.from_seed(seed), clip).numpy()


def uniform_images(n=64, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, *shape)).astype(np.float32)


# ---- bit depth ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 3, 8])
@pytest.mark.parametrize("clip", [(0.0, 1.0), (-1.0, 1.0)])
def test_bit_depth_leaves_exactly_2_to_the_bits_even_levels_over_the_range(registry, bits, clip):
    lo, hi = clip
    x = lo + uniform_images() * (hi - lo)
    levels = np.unique(transform(registry, "bit-depth", x, clip, bits=bits))
    np.testing.assert_allclose(levels, np.linspace(lo, hi, 2**bits), atol=1e-6)


def test_bit_depth_rounds_to_the_nearest_level(registry):
    # Levels 0, 1/3, 2/3, 1: the boundaries between them are at 1/6, 1/2 and 5/6.
    x = np.array([0.16, 0.17, 0.49, 0.51, 0.83, 0.84], np.float32).reshape(1, 1, 6, 1)
    out = transform(registry, "bit-depth", x, bits=2)
    np.testing.assert_allclose(out.ravel(), [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1], atol=1e-6)


# ---- median filter -----------------------------------------------------------------------
def test_median_filter_removes_salt_and_pepper(registry):
    rng = np.random.default_rng(0)
    clean = np.full((4, 32, 32, 1), 0.4, np.float32)
    noisy = clean.copy()
    hit = rng.random(clean.shape) < 0.05
    noisy[hit] = rng.choice([0.0, 1.0], size=int(hit.sum()))
    out = transform(registry, "median-filter", noisy, size=3)
    assert np.mean(np.isclose(noisy, 0.4)) < 0.96
    assert np.mean(np.isclose(out, 0.4)) > 0.99  # a window with >= 5 of 9 outliers is rare


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_median_filter_is_scipys_median_filter(registry, size):
    """scipy.ndimage.median_filter's conventions, as feature squeezing's (one home: squeezers.py):
    the border reflected with the edge pixel repeated, the upper middle value of an even window."""
    x = uniform_images(n=3, shape=(12, 10, 2))
    out = transform(registry, "median-filter", x, size=size)
    expected = ndimage.median_filter(x, size=(1, size, size, 1), mode="reflect")
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_median_filter_of_an_even_window_takes_the_upper_middle_value(registry):
    x = np.array([[0.1, 0.9], [0.3, 0.5]], np.float32).reshape(1, 2, 2, 1)
    out = transform(registry, "median-filter", x, size=2)
    # Pixel (1, 1)'s window is the whole image: 0.1 0.3 0.5 0.9, whose upper middle value is 0.5.
    assert out[0, 1, 1, 0] == pytest.approx(0.5)


def test_median_filter_window_larger_than_the_image_is_a_clear_error(registry):
    with pytest.raises(InputError, match="smaller size"):
        transform(registry, "median-filter", uniform_images(n=1, shape=(4, 4, 1)), size=11)


# ---- jpeg --------------------------------------------------------------------------------
def smooth_images(channels):
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    base = 0.5 + 0.4 * np.sin(4 * xx) * np.cos(3 * yy)
    tint = np.array([1.0, 0.8, 0.6][:channels])  # smooth colour: JPEG subsamples chroma
    texture = 0.05 * np.random.default_rng(1).normal(size=(2, 32, 32, 1))
    return np.clip(base[None, :, :, None] * tint + texture, 0, 1).astype(np.float32)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("clip", [(0.0, 1.0), (-1.0, 1.0)])
def test_jpeg_changes_images_keeps_their_range_and_loses_more_at_low_quality(
    registry, channels, clip
):
    lo, hi = clip
    x = lo + smooth_images(channels) * (hi - lo)
    errors = {}
    for quality in (10, 95):
        out = transform(registry, "jpeg", x, clip, quality=quality)
        assert out.shape == x.shape and out.dtype == np.float32
        assert out.min() >= lo and out.max() <= hi
        errors[quality] = np.abs(out - x).mean() / (hi - lo)
    assert errors[95] > 0  # even the best quality is lossy
    assert errors[10] > 2 * errors[95]
    assert errors[95] < 0.02  # and close to the image: the range was mapped, not clipped


def test_jpeg_of_two_channel_images_is_a_clear_error(registry):
    with pytest.raises(InputError, match="1 \\(grey\\) or 3 \\(RGB\\) channels"):
        transform(registry, "jpeg", uniform_images(n=1, shape=(8, 8, 2)))


# ---- noise -------------------------------------------------------------------------------
def test_gaussian_noise_has_the_asked_sigma_stays_in_range_and_follows_the_seed(registry):
    x = np.full((16, 16, 16, 1), 0.5, np.float32)
    out = transform(registry, "gaussian-noise", x, sigma=0.1, seed=1)
    assert out.min() >= 0 and out.max() <= 1
    assert np.std(out - x) == pytest.approx(0.1, rel=0.05)
    np.testing.assert_array_equal(out, transform(registry, "gaussian-noise", x, sigma=0.1, seed=1))
    assert not np.array_equal(out, transform(registry, "gaussian-noise", x, sigma=0.1, seed=2))


# ---- every preprocessor is a Classifier that attacks run on ------------------------------
def test_jpeg_defended_classifier_is_a_classifier_the_attacks_run_on(registry, clf, test_batch):
    x, y = test_batch
    defended = registry.create("defense", "jpeg", quality=75).apply(clf)
    assert isinstance(defended, egide.Classifier)
    attacks = {"fgsm": {}, "pgd": {"steps": 3}, "bim": {"steps": 3}, "mim": {"steps": 3}}
    for view in (defended, defended.adaptive()):
        for attack, params in attacks.items():
            res = registry.create("attack", attack, eps=0.1, **params).run(view, x[:16], y[:16])
            assert res.x_adv.shape == x[:16].shape and res.linf.max() <= 0.1 + 1e-6


# Not the median filter: the bars are one pixel wide, and a median erases any such line.
@pytest.mark.parametrize("name", [n for n in PREPROCESSORS if n != "median-filter"])
def test_default_preprocessors_keep_a_well_trained_model_accurate(registry, clf, test_batch, name):
    x, y = test_batch  # images the undefended model gets right
    defended = registry.create("defense", name).apply(clf)
    assert np.mean(defended.predict(x) == y) >= 0.9


# ---- BPDA and EOT ------------------------------------------------------------------------
@pytest.mark.parametrize("name, params", [("bit-depth", {"bits": 4}), ("jpeg", {"quality": 50})])
def test_bpda_breaks_what_the_non_adaptive_attack_cannot_move(
    registry, clf, test_batch, name, params
):
    x, y = test_batch
    defended = registry.create("defense", name, **params).apply(clf)
    pgd = registry.create("attack", "pgd", eps=0.15, steps=10)
    plain = pgd.run(defended, x, y)
    adaptive = pgd.run(defended.adaptive(), x, y)
    # The rounding's gradient is zero: PGD takes no step beyond its random start.
    robust_plain = np.mean(defended.predict(plain.x_adv) == y)
    robust_adaptive = np.mean(defended.predict(adaptive.x_adv) == y)
    assert robust_plain >= 0.8
    assert robust_adaptive <= robust_plain - 0.5


def test_a_non_adaptive_attacker_gets_no_gradient_through_a_quantiser(registry, clf, test_batch):
    x, y = test_batch
    defended = registry.create("defense", "bit-depth", bits=3).apply(clf)
    xs = tf.constant(x)
    grads = []
    for view in (defended, defended.adaptive()):
        with tf.GradientTape() as tape:
            tape.watch(xs)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=view.logits(xs))
        grads.append(tape.gradient(loss, xs, unconnected_gradients="zero").numpy())
    assert not grads[0].any()
    assert np.abs(grads[1]).sum() > 0


def test_the_bpda_view_predicts_exactly_like_the_defense(registry, clf, test_batch):
    x, _ = test_batch
    defended = registry.create("defense", "jpeg", quality=20).apply(clf)
    # Same forward pass; BPDA's x + (jpeg(x) - x) may differ from jpeg(x) in the last float bit.
    adaptive, real = defended.adaptive().predict_logits(x), defended.predict_logits(x)
    np.testing.assert_allclose(adaptive, real, atol=1e-5)
    np.testing.assert_array_equal(adaptive.argmax(axis=1), real.argmax(axis=1))


@pytest.mark.parametrize("name", ["gaussian-noise", "randomized-smoothing"])
def test_eot_attack_reproduces_under_a_seed_batch_by_batch(registry, clf, test_batch, name):
    x, y = test_batch
    x, y = x[:16], y[:16]
    pre = registry.create("defense", name, sigma=0.2)
    pgd = registry.create("attack", "pgd", eps=0.1, steps=3, random_start=False)  # only the defense draws

    def attack(seed, defense_seed=0, **shard):
        view = pre.apply(clf, seed=defense_seed).adaptive(eot_samples=4)
        return pgd.run(view, shard.get("x", x), shard.get("y", y), seed=seed, batch_size=8,
                       first_batch=shard.get("first_batch", 0)).x_adv

    first = attack(3)
    np.testing.assert_array_equal(first, attack(3, defense_seed=7))  # the run's seed rules its draws
    assert not np.array_equal(first, attack(4))  # and the draws do come from it
    # A batch draws from the run's seed and its place in the run only: attacked alone, as
    # batch 1 of the run (a worker's shard), it comes out the same.
    np.testing.assert_array_equal(first[8:], attack(3, x=x[8:], y=y[8:], first_batch=1))


def test_eot_logits_are_the_log_mean_probability_over_draws(registry, clf, test_batch):
    x, _ = test_batch
    pre = registry.create("defense", "gaussian-noise", sigma=0.1)
    xs = tf.constant(x[:5])
    eot = pre.adaptive_logits(clf, xs, tf.random.Generator.from_seed(7), eot_samples=6)
    # The same six draws by hand: the view tiles the batch and draws noise for all copies at once.
    noisy = pre.transform(tf.tile(xs, [6, 1, 1, 1]), tf.random.Generator.from_seed(7), clf.clip)
    probs = tf.nn.softmax(clf.logits(noisy)).numpy().reshape(6, 5, -1).mean(axis=0)
    np.testing.assert_allclose(tf.nn.softmax(eot).numpy(), probs, atol=1e-5)


# ---- randomized smoothing ----------------------------------------------------------------
@pytest.fixture(scope="module")
def brightness_clf():
    """Class 0 when the mean pixel is above 0.5, class 1 below: at exactly 0.5 noise splits it."""
    import keras

    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]
    )
    model.layers[-1].set_weights([np.array([[50.0, -50.0]]), np.array([-25.0, 25.0])])
    return egide.Classifier.from_keras(model)


def test_certify_abstains_on_a_split_vote_and_certifies_a_confident_one(registry, brightness_clf):
    x = np.stack([np.full((4, 4, 1), v, np.float32) for v in (0.5, 0.9, 0.1)])
    smoothing = registry.create("defense", "randomized-smoothing", sigma=0.25)
    cert = smoothing.certify(brightness_clf, x, n0=50, n=500, alpha=0.001, seed=0)
    assert cert.label.tolist() == [-1, 0, 1]
    assert cert.radius[0] == 0
    # Every copy of a 0.9 or 0.1 image votes the same way (the noise mean over 16 pixels has
    # sigma 0.0625): pA_lower is the Clopper-Pearson bound for 500/500, alpha ** (1 / 500).
    np.testing.assert_allclose(cert.radius[1:], 0.25 * norm.ppf(0.001 ** (1 / 500)), rtol=1e-6)
    assert cert.certified_accuracy([0, 0, 1]) == pytest.approx(2 / 3)
    assert cert.certified_accuracy([0, 0, 1], radius=1.0) == 0


def test_certify_reproduces_under_a_seed_and_accepts_the_smoothed_classifier(
    registry, brightness_clf
):
    x = np.stack([np.full((4, 4, 1), v, np.float32) for v in (0.52, 0.55, 0.6)])
    smoothing = registry.create("defense", "randomized-smoothing", sigma=0.25)
    defended = smoothing.apply(brightness_clf)
    first = smoothing.certify(defended, x, n0=20, n=300, seed=1, batch_size=64)
    again = smoothing.certify(brightness_clf, x, n0=20, n=300, seed=1, batch_size=64)
    np.testing.assert_array_equal(first.radius, again.radius)
    assert 0 < first.radius[2] and first.radius[1] < first.radius[2]  # more margin, more radius
    other = registry.create("defense", "randomized-smoothing", sigma=0.5)
    with pytest.raises(InputError, match="sigma=0.25"):
        other.certify(defended, x, n0=5, n=10)


def test_smoothed_prediction_is_the_vote_over_noisy_copies(registry, brightness_clf):
    x = np.stack([np.full((4, 4, 1), v, np.float32) for v in (0.9, 0.1, 0.5)])
    smoothing = registry.create("defense", "randomized-smoothing", sigma=0.25, samples=200)
    defended = smoothing.apply(brightness_clf)
    logits = defended.predict_logits(x)
    assert np.isfinite(logits).all()
    votes = np.exp(logits) * (200 + 2) - 1  # logits are log((votes + 1) / (samples + classes))
    np.testing.assert_allclose(votes.sum(axis=1), 200, rtol=1e-4)
    np.testing.assert_allclose(votes[:2], [[200, 0], [0, 200]], atol=1e-3)
    assert 60 < votes[2, 0] < 140  # a split vote


def test_randomized_smoothing_vote_gives_the_attacker_no_gradient(registry, brightness_clf):
    smoothing = registry.create("defense", "randomized-smoothing", sigma=0.25, samples=10)
    defended = smoothing.apply(brightness_clf)
    xs = tf.constant(np.full((2, 4, 4, 1), 0.6, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(xs)
        out = tf.reduce_sum(defended.logits(xs))
    assert tape.gradient(out, xs) is None


# ---- bad parameters ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, params, field",
    [
        ("jpeg", {"quality": 0}, "quality"),
        ("jpeg", {"quality": 101}, "quality"),
        ("bit-depth", {"bits": 0}, "bits"),
        ("bit-depth", {"bits": 9}, "bits"),
        ("gaussian-noise", {"sigma": 0}, "sigma"),
        ("gaussian-noise", {"sigma": -0.1}, "sigma"),
        ("randomized-smoothing", {"sigma": 0}, "sigma"),
        ("median-filter", {"size": 1}, "size"),
    ],
)
def test_bad_parameters_are_clear_errors_naming_the_field(registry, name, params, field):
    with pytest.raises(ParameterError) as err:
        registry.create("defense", name, **params)
    assert f"  {field}: " in str(err.value) and name in str(err.value)
    assert err.value.errors[0]["field"] == field


def test_certify_refuses_bad_arguments(registry, brightness_clf):
    smoothing = registry.create("defense", "randomized-smoothing")
    x = np.zeros((1, 4, 4, 1), np.float32)
    with pytest.raises(InputError, match="alpha"):
        smoothing.certify(brightness_clf, x, alpha=1.5)
    with pytest.raises(InputError, match="n0 and n"):
        smoothing.certify(brightness_clf, x, n=0)


# ---- the conformance suite catches broken preprocessors ----------------------------------
class _Params(BaseModel, extra="forbid"):
    pass


class _Brightens(Preprocessor):
    name = "brightens"
    title = "Leaves the range"
    Params = _Params

    def transform(self, x, rng, clip):
        return x + 0.5


class _Unseeded(_Brightens):
    name = "unseeded-noise"
    randomized = True
    differentiable = True

    def transform(self, x, rng, clip):
        noise = np.random.default_rng().normal(0, 0.1, x.shape[1:]).astype(np.float32)  # not `rng`
        return tf.clip_by_value(x + noise, *clip)


class _NoGradient(_Brightens):
    name = "no-gradient"

    def transform(self, x, rng, clip):
        return tf.round(x)

    def approximation(self, x, clip):
        return tf.zeros_like(x)  # a BPDA stand-in with no slope: adaptive attackers get nothing


@pytest.mark.parametrize(
    "cls, message",
    [
        (_Brightens, "leaves the classifier's range"),
        (_Unseeded, "same seed give different logits"),
        (_NoGradient, "no usable gradient"),
    ],
)
def test_the_suite_catches_broken_preprocessors(cls, message):
    [check] = [c for c in plugin_checks(cls) if c.name == "defense-keeps-classifier"]
    with pytest.raises(ConformanceError, match=message):
        check()


def test_defended_classifier_describes_its_defense(registry, clf):
    defended = registry.create("defense", "bit-depth", bits=3).apply(clf, seed=2)
    assert isinstance(defended, PreprocessedClassifier)
    desc = defended.describe()
    assert desc["defense"]["plugin"] == "bit-depth" and desc["defense"]["params"] == {"bits": 3}
    assert desc["adaptive"] is False and defended.adaptive().describe()["adaptive"] is True
