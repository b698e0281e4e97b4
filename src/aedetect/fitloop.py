"""The training loop of `AutoencoderDetector.fit`: one traced step, the epochs in Python.

Keras' `model.fit` traces a general training function (metrics, distribution strategies, a
multi-step loop, an optimizer that works for any model) and reads a tf.data pipeline: a few CPU
seconds of fixed cost, most of a fit of a few thousand rows. An autoencoder needs less:

- one `tf.function` step: the network's forward pass in training mode, the mean squared error
  plus the network's own losses (the L2 penalty), and Adam through TensorFlow's fused
  `ResourceApplyAdam` kernel (one op per weight, the same update as `keras.optimizers.Adam`). Its
  input signature is fixed, so it is traced once (and compiled once with XLA);
- rows in memory: each pass over them is a seeded permutation cut into full batches, the last one
  topped up with the pass's first rows, so every step has the same shape; no tf.data;
- rows streamed from a `tf.data.Dataset`: its batches, one pass per epoch;
- after each epoch the validation loss (the caller's function, the detector's scoring pass);
  early stopping on it with patience, and the weights of the best epoch restored at the end;
- Keras callbacks are still called: `on_train_begin/end`, `on_epoch_begin/end` with the logs
  `{"loss", "val_loss"}`, and the batch hooks for callbacks that define them (each then costs a
  wait for the step's result); `model.stop_training = True` from a callback ends training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np


def shuffled_batches(n_rows: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices of one pass: a permutation from `rng` cut into batches of `batch_size`, the last
    topped up with the permutation's first rows. Every row is in the pass (a few twice)."""
    perm = rng.permutation(n_rows)
    size = min(batch_size, n_rows)
    for start in range(0, n_rows, size):
        idx = perm[start:start + size]
        if len(idx) < size:
            idx = np.concatenate([idx, perm[:size - len(idx)]])
        yield idx


def array_epochs(x: np.ndarray, batch_size: int, passes: int, seed: int) -> Callable[[], Iterator]:
    """Batches of one epoch (`passes` passes over `x`) each time it is called, from a seeded
    random stream that advances with every epoch: the same seed gives the same order."""
    rng = np.random.default_rng(seed)

    def epoch():
        for _ in range(passes):
            for idx in shuffled_batches(len(x), batch_size, rng):
                yield x[idx]

    return epoch


class _Adam:
    """Adam (Kingma & Ba, Keras' defaults: beta 0.9 / 0.999, epsilon 1e-7) on `variables`,
    through the fused kernel."""

    def __init__(self, variables: Sequence, learning_rate: float):
        import tensorflow as tf

        self.variables = [getattr(v, "value", v) for v in variables]  # Keras -> tf.Variable
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.t = tf.Variable(0.0, trainable=False)
        self.learning_rate = float(learning_rate)

    def apply(self, grads) -> None:
        import tensorflow as tf

        self.t.assign_add(1.0)
        b1, b2 = tf.pow(0.9, self.t), tf.pow(0.999, self.t)
        for var, m, v, g in zip(self.variables, self.m, self.v, grads, strict=True):
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=m.handle, v=v.handle, beta1_power=b1, beta2_power=b2,
                lr=self.learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-7, grad=g)


def train_step(model, learning_rate: float, jit_compile: bool, batch_size: int | None = None):
    """A traced function: one Adam step on a batch of rows (the autoencoder's target is its
    input); returns the batch's loss. `batch_size=None` accepts any batch size."""
    import tensorflow as tf

    variables = model.trainable_variables
    opt = _Adam(variables, learning_rate)
    spec = tf.TensorSpec([batch_size, model.input_shape[-1]], tf.float32)

    @tf.function(input_signature=[spec], autograph=False, jit_compile=jit_compile)
    def step(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(batch, training=True) - batch))
            if model.losses:
                loss += tf.add_n(model.losses)
        opt.apply(tape.gradient(loss, variables))
        return loss

    return step


def _overrides(callback, hook: str) -> bool:
    import keras

    return getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook)


def run_epochs(
    model,
    step,
    epoch_batches: Callable[[], Iterable],
    validation_loss: Callable[[], float],
    *,
    epochs: int,
    patience: int,
    callbacks: Sequence = (),
    verbose: int = 0,
    steps_per_epoch: int | None = None,
) -> dict[str, list[float]]:
    """Train until `epochs` or early stopping; returns the history `{"loss", "val_loss"}`.

    Early stopping follows `keras.callbacks.EarlyStopping(monitor="val_loss", patience,
    restore_best_weights=True)`: training stops once `patience` epochs in a row have not
    lowered the best validation loss, and the best epoch's weights are restored.
    """
    import keras
    import tensorflow as tf

    cbs = keras.callbacks.CallbackList(list(callbacks), add_progbar=verbose != 0, model=model,
                                       verbose=verbose, epochs=epochs, steps=steps_per_epoch)
    batch_hooks = any(_overrides(c, "on_train_batch_end") or _overrides(c, "on_train_batch_begin")
                      for c in cbs.callbacks)
    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    best, best_weights, wait = np.inf, None, 0
    model.stop_training = False
    cbs.on_train_begin()
    for epoch in range(epochs):
        cbs.on_epoch_begin(epoch)
        losses, sizes, running, seen = [], [], 0.0, 0
        for i, batch in enumerate(epoch_batches()):
            if batch_hooks:
                cbs.on_train_batch_begin(i)
            losses.append(step(batch))  # a tensor: no wait for the step to finish
            sizes.append(len(batch))
            if batch_hooks:
                seen += sizes[-1]
                running += (float(losses[-1]) - running) * sizes[-1] / seen
                cbs.on_train_batch_end(i, {"loss": running})
        # The epoch's loss is the rows' mean, as Keras reports it.
        loss = float(np.average(tf.stack(losses).numpy(), weights=sizes)) if losses else np.nan
        logs = {"loss": loss, "val_loss": float(validation_loss())}
        for key, value in logs.items():
            history[key].append(value)
        if best_weights is None or logs["val_loss"] < best:
            best, best_weights, wait, patience_out = logs["val_loss"], model.get_weights(), 0, False
        else:
            wait += 1
            patience_out = wait >= patience and epoch > 0
        cbs.on_epoch_end(epoch, logs)
        if model.stop_training or patience_out:
            break
    if best_weights is not None:
        model.set_weights(best_weights)
    cbs.on_train_end()
    return history
