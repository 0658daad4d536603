"""FGSM against its closed form on a linear softmax model."""

import keras
import numpy as np
import pytest

import egide


@pytest.fixture(scope="module")
def linear():
    """softmax(W x + b) on flattened 4x4 images, 3 classes, fixed random weights."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]
    )
    w, b = model.layers[-1].get_weights()
    return model, w, b


def closed_form_gradient(x, y, w, b):
    """d CE / dx = W (softmax(Wx + b) - onehot(y)), per sample, reshaped to the image."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    z = flat @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return ((p - np.eye(3)[y]) @ w.T).reshape(x.shape)


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("norm", ["inf", "2"])
def test_fgsm_matches_the_closed_form(linear, norm, targeted):
    model, w, b = linear
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, (16, 4, 4, 1)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    labels = (y + 1) % 3 if targeted else y
    eps = 0.1 if norm == "inf" else 0.5
    grad = closed_form_gradient(x, labels, w, b) * (-1 if targeted else 1)
    if norm == "inf":
        step = np.sign(grad)
    else:
        step = grad / np.linalg.norm(grad.reshape(16, -1), axis=1).reshape(16, 1, 1, 1)
    expected = np.clip(x + eps * step, 0, 1)

    attack = egide.registry().create("attack", "fgsm", eps=eps, norm=norm, targeted=targeted)
    clf = egide.Classifier.from_keras(model)  # softmax output: logits are recovered
    result = attack.run(clf, x, y, target=labels if targeted else None)

    np.testing.assert_allclose(result.x_adv, expected, atol=1e-5)
