"""The detector's own training loop does what Keras' fit, Adam and EarlyStopping would."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from aedetect.model.fitloop import array_epochs, even_steps_per_call, run_epochs, train_step
from aedetect.model.network import build_autoencoder


def _model(l2=0.0):
    keras.utils.set_random_seed(0)
    return build_autoencoder(4, (6, 2, 6), "tanh", l2=l2)


def _rows(n=64):
    return np.random.default_rng(1).normal(size=(n, 4)).astype("float32")


def test_step_matches_keras_adam():
    x = _rows(80)
    ours, theirs = _model(), _model()
    steps = train_step(ours, 1e-2, jit_compile=False, batch_size=16)
    steps(x[:48].reshape(3, 16, 4))  # three steps in one call, then two in another
    steps(x[48:].reshape(2, 16, 4))
    opt = keras.optimizers.Adam(1e-2)
    for i in range(5):
        b = x[i * 16:(i + 1) * 16]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(theirs(b, training=True) - b))
        opt.apply(tape.gradient(loss, theirs.trainable_variables), theirs.trainable_variables)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours.get_weights()[0], _model().get_weights()[0])  # it trained


def test_step_loss_is_the_mse_plus_the_l2_penalty_times_the_rows():
    model, b = _model(l2=0.1), _rows(16)
    expected = float(np.mean((model(b).numpy() - b) ** 2) + sum(float(v) for v in model.losses))
    assert float(model.losses[0]) > 0
    assert float(train_step(model, 1e-3, False)(b[None])) == pytest.approx(16 * expected, rel=1e-5)


class _Record(keras.callbacks.Callback):
    def __init__(self, stop_at=None):
        super().__init__()
        self.calls, self.weights, self.stop_at = [], [], stop_at

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))
        self.weights.append(self.model.get_weights())
        if epoch == self.stop_at:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append("batch")

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


@pytest.mark.parametrize("patience", [0, 1, 2])
def test_early_stopping_matches_keras_and_restores_the_best_epoch(patience):
    val = iter([3.0, 2.0, 2.5, 1.9, 2.6, 2.7, 2.8, 2.9])
    model, record = _model(), _Record()
    history = run_epochs(model, train_step(model, 1e-2, False, 16), array_epochs(_rows(), 16, 1, 0),
                         lambda: next(val), epochs=8, patience=patience, callbacks=[record])
    # Keras' own EarlyStopping, fed the same validation losses, stops at the same epoch.
    keras_stop = keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
    keras_stop.set_model(_model())
    keras_stop.model.stop_training = False
    keras_stop.on_train_begin()
    for epoch, v in enumerate(history["val_loss"]):
        keras_stop.on_epoch_end(epoch, {"val_loss": v})
    assert keras_stop.model.stop_training and keras_stop.stopped_epoch == len(history["val_loss"]) - 1
    best = int(np.argmin(history["val_loss"]))
    assert best == keras_stop.best_epoch
    for a, b in zip(model.get_weights(), record.weights[best], strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(history["loss"]) == len(history["val_loss"]) and np.isfinite(history["loss"]).all()


def test_steps_per_call_do_not_change_the_training():
    results = []
    for per_call in (1, 3, 64):
        model = _model()
        history = run_epochs(model, train_step(model, 1e-2, False, 16),
                             array_epochs(_rows(), 16, 2, 0), lambda: 1.0, epochs=3, patience=5,
                             steps_per_call=per_call)
        results.append((history["loss"], model.get_weights()))
    for loss, weights in results[1:]:
        np.testing.assert_allclose(loss, results[0][0], rtol=1e-6)
        for a, b in zip(weights, results[0][1], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_callbacks_are_called_and_can_stop_training():
    model, record = _model(), _Record(stop_at=1)
    history = run_epochs(model, train_step(model, 1e-2, False, 16), array_epochs(_rows(), 16, 2, 0),
                         lambda: 1.0, epochs=5, patience=5, callbacks=[record])
    assert len(history["val_loss"]) == 2
    epoch = ["batch"] * 8  # 2 passes of 4 batches, one step per call for the batch hooks
    assert record.calls == ["train_begin", *epoch, ("epoch_end", 0, ["loss", "val_loss"]),
                            *epoch, ("epoch_end", 1, ["loss", "val_loss"]), "train_end"]


@pytest.mark.parametrize(("steps", "per_call"), [(111, 37), (128, 64), (113, 1), (10, 10)])
def test_xla_calls_cut_an_epoch_into_calls_of_one_shape(steps, per_call):
    assert even_steps_per_call(steps) == per_call


def test_training_noise_is_drawn_anew_at_every_step_of_a_call():
    b = _rows(16)

    def noisy():
        keras.utils.set_random_seed(0)
        return build_autoencoder(4, (6, 2, 6), "tanh", noise_std=0.5, dropout=0.2)

    first = float(train_step(noisy(), 0.0, False, 16)(b[None]))  # learning rate 0: weights stay
    both = float(train_step(noisy(), 0.0, False, 16)(np.stack([b, b])))
    again = float(train_step(noisy(), 0.0, False, 16)(np.stack([b, b])))
    assert both == again  # seeded
    assert both != pytest.approx(2 * first, rel=1e-6)  # the second step drew other noise


def test_a_trimmed_step_leaves_rows_above_the_cut_out_of_the_gradient():
    from aedetect.model.fitloop import trimmed_mean

    x = _rows(16)
    far = x.copy()
    far[:2] *= 50  # two rows far off: above any cut the other rows set
    errors = np.mean((_model()(x).numpy() - x) ** 2, axis=1)
    cut = tf.Variable(float(np.max(errors)) + 1e-3, dtype=tf.float32)
    trimmed, clean = _model(), _model()
    loss = train_step(trimmed, 1e-2, False, trim=cut)(far[None])
    train_step(clean, 1e-2, False, trim=cut)(x[None])
    # The far rows change nothing: the same step as on the rows without them...
    kept = np.mean((_model()(x[2:]).numpy() - x[2:]) ** 2)
    assert float(loss) == pytest.approx(16 * kept, rel=1e-5)
    plain = _model()
    train_step(plain, 1e-2, False)(x[2:][None])
    for a, b in zip(trimmed.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert trimmed_mean(np.array([1.0, 2.0, 3.0, 100.0]), 0.25) == pytest.approx(2.0)
