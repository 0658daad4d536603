"""Trainer defenses (adversarial training, fast AT, TRADES): what they return, that AT buys
robustness, stop/resume through checkpoints, clear errors, and `egide defend` end to end."""

import numpy as np
import pytest

import egide
from egide.core import DataError, InputError
from egide.lab.training.checkpoint import read_checkpoint
from egide.lab.cli import main
from examples.bars import CLASSES

TRAINERS = ["adversarial-training", "fast-adversarial-training", "trades"]
EPS = 0.1  # the bars have contrast 0.6 on noise in [0, 0.3]: 0.1 is a strong but fair budget


@pytest.fixture(scope="module")
def small(bars):
    """200 training and 50 validation images of the bars task."""
    x_train, y_train, x_test, y_test = bars
    return (x_train[:200], y_train[:200]), (x_test[:50], y_test[:50])


def pgd_accuracy(clf, x, y, eps=EPS):
    attack = egide.registry().create("attack", "pgd", eps=eps, steps=20)
    result = attack.run(clf, x, y, seed=0)
    return float(np.mean(result.y_pred_adv == y))


def create(name, **params):
    return egide.registry().create("defense", name, **params)


def weights(clf):
    return [np.array(w) for w in clf.model.get_weights()]


@pytest.mark.parametrize("name", TRAINERS)
def test_a_trainer_returns_a_trained_copy_with_the_same_architecture(name, clf, small):
    before = weights(clf)
    defended = create(name, epochs=1, eps=EPS, val_steps=2).apply(clf, train=small[0], val=small[1])
    assert isinstance(defended, egide.Classifier)
    assert defended.model is not clf.model
    assert [type(layer) for layer in defended.model.layers] == [type(layer) for layer in clf.model.layers]
    assert [w.shape for w in weights(defended)] == [w.shape for w in before]
    assert any(not np.array_equal(a, b) for a, b in zip(weights(defended), before)), "nothing trained"
    for a, b in zip(weights(clf), before):  # the given model is left as it was
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", TRAINERS)
def test_a_trainer_trains_a_model_of_volumes(name, rods_model):
    """Every trainer on a Conv3D network: the inner attack perturbs volumes within the ball, and
    one epoch on 64 volumes changes the weights of a copy of the same architecture."""
    from examples.rods import make_rods

    import tensorflow as tf

    from egide.core.trainer import TrainingContext

    clf = egide.Classifier.from_keras(rods_model, clip=(0.0, 1.0))
    x, y = make_rods(80, seed=41)
    x_adv = create(name, eps=EPS).adversarial(TrainingContext.of(clf), tf.constant(x[:16]), tf.constant(y[:16]),
                                              tf.constant(EPS), tf.constant([0, 1], tf.int64)).numpy()
    assert x_adv.shape == x[:16].shape and np.abs(x_adv - x[:16]).max() <= EPS + 1e-6 and x_adv.min() >= 0
    assert np.abs(x_adv - x[:16]).max() > EPS / 2  # it did move
    before = weights(clf)
    # Batches of 16: four steps (fast AT's cyclic learning rate is 0 at a lone first step).
    defended = create(name, epochs=1, eps=EPS, val_steps=1, batch_size=16).apply(clf, train=(x[:64], y[:64]),
                                                                                val=(x[64:], y[64:]))
    assert defended.input_shape == clf.input_shape == (10, 10, 10, 1)
    assert any(not np.array_equal(a, b) for a, b in zip(weights(defended), before)), "nothing trained"
    for a, b in zip(weights(clf), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", TRAINERS)
def test_the_inner_attack_stays_in_the_ball_and_raises_the_loss(name, clf, test_batch):
    import tensorflow as tf

    from egide.core.trainer import TrainingContext

    x, y = (tf.constant(a[:32]) for a in test_batch)
    trainer = create(name, eps=EPS)
    x_adv = trainer.adversarial(TrainingContext.of(clf), x, y, tf.constant(EPS), tf.constant([0, 1], tf.int64))
    delta = np.abs(x_adv.numpy() - x.numpy())
    assert delta.max() <= EPS + 1e-6 and x_adv.numpy().min() >= 0 and x_adv.numpy().max() <= 1
    loss = lambda images: float(tf.reduce_mean(  # noqa: E731
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=clf.logits(images))))
    assert loss(x_adv) > loss(x) + 0.1  # it found worse points than the clean images


def test_adversarial_training_buys_robust_accuracy(clf, bars):
    x_train, y_train, x_test, y_test = bars
    x_eval, y_eval = x_test[:100], y_test[:100]
    undefended = pgd_accuracy(clf, x_eval, y_eval)
    trainer = create("adversarial-training", epochs=2, eps=EPS)
    defended = trainer.apply(clf, train=(x_train[:600], y_train[:600]), val=(x_test[100:], y_test[100:]))
    robust = pgd_accuracy(defended, x_eval, y_eval)
    clean = float(np.mean(defended.predict(x_eval) == y_eval))
    assert robust >= undefended + 0.2, (undefended, robust)  # measured: 0.28 -> 0.56..0.62
    assert clean >= 0.9
    assert trainer.best["val_adversarial_accuracy"] == max(
        m["val_adversarial_accuracy"] for m in trainer.history
    )


class Interrupt(KeyboardInterrupt):
    pass


def interrupt_at(batch):
    def progress(done, total, label):
        if done == batch:
            raise Interrupt()

    return progress


def test_an_interrupted_run_resumes_to_the_same_weights(clf, small, tmp_path):
    name, params = "adversarial-training", dict(epochs=3, eps=EPS, batch_size=70, val_steps=2)
    whole_trainer = create(name, **params)
    whole = whole_trainer.apply(
        clf, train=small[0], val=small[1], checkpoint=tmp_path / "whole.ckpt", seed=5
    )
    path = tmp_path / "stopped.ckpt"
    with pytest.raises(Interrupt):  # stopped in the middle of the second epoch
        create(name, **params).apply(
            clf, train=small[0], val=small[1], checkpoint=path, seed=5, progress=interrupt_at(5)
        )
    _, header = read_checkpoint(path)
    assert header["epoch"] == 1 and len(header["history"]) == 1
    seen = []
    resumed_trainer = create(name, **params)
    resumed = resumed_trainer.apply(
        clf, train=small[0], val=small[1], checkpoint=path, seed=5,
        progress=lambda done, total, label: seen.append(done),
    )
    assert seen[0] == 4 and seen[-1] == 9  # only epochs 2 and 3 ran
    assert [m["epoch"] for m in resumed_trainer.history] == [1, 2, 3]
    # The same trajectory (not only the same best epoch): every epoch's loss and accuracies.
    for key in ("loss", "val_clean_accuracy", "val_adversarial_accuracy"):
        np.testing.assert_allclose([m[key] for m in resumed_trainer.history],
                                   [m[key] for m in whole_trainer.history], rtol=1e-5)
    for a, b in zip(weights(whole), weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_is_never_half_written(clf, small, tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    trainer = create("fast-adversarial-training", epochs=2, eps=EPS, batch_size=150)
    calls = {"n": 0}
    real_savez = np.savez

    def savez_then_stop(handle, **arrays):
        calls["n"] += 1
        if calls["n"] == 2:  # the second epoch's checkpoint: stopped half-way through writing
            handle.write(b"half a zip")
            raise KeyboardInterrupt
        real_savez(handle, **arrays)

    monkeypatch.setattr(np, "savez", savez_then_stop)
    with pytest.raises(KeyboardInterrupt):
        trainer.apply(clf, train=small[0], val=small[1], checkpoint=path)
    groups, header = read_checkpoint(path)  # still the first epoch's, whole
    assert header["epoch"] == 1 and len(groups["model"]) == len(clf.model.variables)
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]  # no partial file left behind


def test_a_checkpoint_from_other_params_is_refused(clf, small, tmp_path):
    path = tmp_path / "run.ckpt"
    create("adversarial-training", epochs=1, eps=EPS).apply(clf, train=small[0], val=small[1], checkpoint=path)
    with pytest.raises(InputError, match=r"another training run.*epochs: 1 there, 2 here.*delete"):
        create("adversarial-training", epochs=2, eps=EPS).apply(
            clf, train=small[0], val=small[1], checkpoint=path
        )
    with pytest.raises(InputError, match=r"seed"):
        create("adversarial-training", epochs=1, eps=EPS).apply(
            clf, train=small[0], val=small[1], checkpoint=path, seed=1
        )


def test_labels_that_do_not_fit_the_model_fail_before_training(clf, small):
    (x, y), val = small
    bad = y.copy()
    bad[7] = len(CLASSES)  # the model has 3 classes: label 3 does not exist
    ran = []
    trainer = create("adversarial-training", epochs=1)
    with pytest.raises((InputError, DataError), match=r"3 classes|0\.\.2"):
        trainer.apply(clf, train=(x, bad), val=val, progress=lambda *a: ran.append(a))
    with pytest.raises(DataError, match=r"16x16|expects"):
        trainer.apply(clf, train=(np.zeros((4, 16, 16, 1), np.float32), y[:4]), val=val,
                      progress=lambda *a: ran.append(a))
    assert not ran


def test_fast_at_cyclic_learning_rate_rises_then_falls():
    from egide.plugins.defenses.fast_adversarial_training import OneCycle

    schedule = OneCycle(0.01, total=100)
    rates = [float(schedule(step)) for step in range(100)]
    assert max(rates) == pytest.approx(0.01) and int(np.argmax(rates)) == 39
    assert rates[0] < 0.001 and rates[-1] == pytest.approx(0.0, abs=1e-9)
    assert all(a <= b for a, b in zip(rates[:40], rates[1:40]))


# ---- egide defend ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, cnn_model, bars):
    root = tmp_path_factory.mktemp("defend")
    model = root / "model.keras"
    cnn_model.save(model)
    x_train, y_train, x_test, y_test = bars
    data = root / "data.npz"
    np.savez(data, x_train=x_train[:200], y_train=y_train[:200], x_val=x_test[:60],
             y_val=y_test[:60], x_test=x_test[60:120], y_test=y_test[60:120],
             class_names=np.array(CLASSES))
    return model, data


def test_defend_trains_saves_and_cleans_up(cli_files, tmp_path, capsys):
    model, data = cli_files
    out = tmp_path / "at.keras"
    code = main(["defend", "--defense", "adversarial-training", "--param", "epochs=2",
                 "--param", "eps=0.1", "--model", str(model), "--data", str(data),
                 "--out", str(out), "--no-progress"])
    text = capsys.readouterr()
    assert code == 0, text.err
    assert "epoch 1/2" in text.out and "epoch 2/2" in text.out and "val adversarial" in text.out
    assert "test clean accuracy" in text.out
    defended = egide.Classifier.load(out)
    assert defended.input_shape == (8, 8, 1) and defended.num_classes == 3
    assert not (tmp_path / "at.keras.ckpt").exists()  # the model is the result now


def test_defend_resumes_after_an_interrupt(cli_files, tmp_path, capsys, monkeypatch):
    from egide.lab.training import trainer_loop

    model, data = cli_files
    out = tmp_path / "at.keras"
    argv = ["defend", "--defense", "trades", "--param", "epochs=2", "--model", str(model),
            "--data", str(data), "--out", str(out), "--no-progress"]
    real = trainer_loop._warmup
    steps = {"n": 0}

    def stop_in_epoch_two(params, step, per_epoch):
        steps["n"] += 1
        if steps["n"] == per_epoch + 1:
            raise KeyboardInterrupt  # Ctrl-C during the second epoch
        return real(params, step, per_epoch)

    monkeypatch.setattr(trainer_loop, "_warmup", stop_in_epoch_two)
    assert main(argv) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "at.keras.ckpt")[1]["epoch"] == 1
    monkeypatch.setattr(trainer_loop, "_warmup", real)
    assert main(argv) == 0
    assert "resuming from the checkpoint" in capsys.readouterr().out
    assert out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--defense", "jpeg"], "preprocessor"),
        (["--defense", "adversarial-training", "--param", "epochs=0"], "epochs"),
        (["--defense", "adversarial-training", "--out", "x.npz"], ".keras"),
    ],
)
def test_defend_user_errors_exit_2(cli_files, tmp_path, capsys, args, message):
    model, data = cli_files
    argv = ["defend", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "m.keras"),
            "--no-progress", *args]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
