"""The training loop of `AutoencoderDetector.fit`: one traced function, the epochs in Python.

Keras' `model.fit` traces a general training function (metrics, distribution strategies, a
multi-step loop, an optimizer that works for any model) and reads a tf.data pipeline: a few CPU
seconds of fixed cost, most of a fit of a few thousand rows. An autoencoder needs less:

- one `tf.function` that runs a stack of steps in a graph loop: each step is the network's
  forward pass in training mode, the mean squared error plus the network's own losses (the L2
  penalty), and Adam through TensorFlow's fused `ResourceApplyAdam` kernel (one op per weight,
  the same update as `keras.optimizers.Adam`). A call from Python costs about half a millisecond
  whatever it does, more than a step of a small network, so rows in memory go up to
  `STEPS_PER_CALL` steps per call. Its input signature is fixed, so it is traced once; with XLA
  every call shape compiles anew, so there each call takes the same number of steps, a divisor
  of the epoch's (`even_steps_per_call`);
- rows in memory: each pass over them is a seeded permutation cut into full batches, the last one
  topped up with the pass's first rows, so every step has the same shape; no tf.data;
- rows streamed from a `tf.data.Dataset`: its batches, one per call, one pass per epoch;
- after each epoch the validation loss (the caller's function, the detector's scoring pass);
  early stopping on it with patience, and the weights of the best epoch restored at the end;
- a robust fit (`trim`, see `trim_schedule`): after a warm-up, rows whose reconstruction error
  is above a cut (the (1 - q) quantile of the training rows' errors, refreshed after every
  epoch) are left out of the gradient, so a few unlabelled anomalies among the training rows are
  not learned;
- Keras callbacks are still called: `on_train_begin/end`, `on_epoch_begin/end` with the logs
  `{"loss", "val_loss"}`, and the batch hooks for callbacks that define them (training then runs
  one step per call); `model.stop_training = True` from a callback ends training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

STEPS_PER_CALL = 64


def even_steps_per_call(steps_per_epoch: int, most: int = STEPS_PER_CALL) -> int:
    """The most steps per call, up to `most`, that cut an epoch into calls of one size."""
    return max(k for k in range(1, most + 1) if steps_per_epoch % k == 0)


def shuffled_batches(n_rows: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of one pass, one batch a row: a permutation from `rng` cut into batches of
    `batch_size`, the last topped up with the permutation's first rows. Every row is in the
    pass (a few twice)."""
    perm = rng.permutation(n_rows)
    size = min(batch_size, n_rows)
    n_batches = -(-n_rows // size)
    return np.concatenate([perm, perm[:n_batches * size - n_rows]]).reshape(n_batches, size)


def array_epochs(x: np.ndarray, batch_size: int, passes: int, seed: int) -> Callable:
    """`epoch(steps_per_call)`: the batches of one epoch (`passes` passes over `x`), stacked
    `steps_per_call` at a time into arrays (steps, rows, features). The order comes from a seeded
    random stream that advances with every epoch: the same seed gives the same order."""
    rng = np.random.default_rng(seed)

    def epoch(steps_per_call: int = 1):
        idx = np.concatenate([shuffled_batches(len(x), batch_size, rng) for _ in range(passes)])
        for start in range(0, len(idx), steps_per_call):
            yield x[idx[start:start + steps_per_call]]

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


def train_step(model, learning_rate: float, jit_compile: bool, batch_size: int | None = None,
               trim=None):
    """A traced function: Adam steps on a stack of batches (steps, rows, features), one after
    the other (the autoencoder's target is its input); returns the sum over the steps of each
    batch's loss times its rows. `batch_size=None` accepts batches of any size. `trim`, a
    float32 `tf.Variable` (the cut, set by `trim_schedule`): the loss is the mean over the rows
    whose mean squared error is at most the cut; the others add nothing to the gradient.

    An ensemble (`aedetect.model.network`, output `members x features` wide): the target is the
    input once per member, and the pass multiplies only the members' blocks (`member_forward`),
    so the weights between members get a zero gradient (Adam's moments there stay zero, and so
    do the weights): each member learns as if alone."""
    import tensorflow as tf

    variables = model.trainable_variables
    opt = _Adam(variables, learning_rate)
    from aedetect.model.network import member_forward, n_members

    n_features = model.input_shape[-1]
    members = n_members(model.output_shape[-1], n_features)
    spec = tf.TensorSpec([None, batch_size, n_features], tf.float32)
    if members == 1:
        forward = lambda batch: model(batch, training=True)  # noqa: E731
    else:
        forward = member_forward(model, members)

    def step(batch):
        target = batch if members == 1 else tf.tile(batch, [1, members])
        with tf.GradientTape() as tape:
            if trim is None:
                loss = tf.reduce_mean(tf.square(forward(batch) - target))
            else:
                err = tf.reduce_mean(tf.square(forward(batch) - target), axis=1)
                keep = tf.cast(err <= trim, tf.float32)
                loss = tf.reduce_sum(err * keep) / tf.maximum(tf.reduce_sum(keep), 1.0)
            if model.losses:
                loss += tf.add_n(model.losses)
        opt.apply(tape.gradient(loss, variables))
        return loss * tf.cast(tf.shape(batch)[0], tf.float32)

    @tf.function(input_signature=[spec], autograph=False, jit_compile=jit_compile)
    def steps(batches):
        def body(i, total):
            return i + 1, total + step(batches[i])

        return tf.while_loop(lambda i, _: i < tf.shape(batches)[0], body,
                             (tf.constant(0), tf.constant(0.0)))[1]

    # Called as a concrete function: no matching of the arguments to a signature at each call.
    concrete = steps.get_concrete_function()
    return lambda batches: concrete(tf.convert_to_tensor(batches, tf.float32))


def trimmed_mean(errors: np.ndarray, share: float) -> float:
    """The mean of `errors` less their highest `share` (at least one row kept)."""
    keep = max(1, len(errors) - int(np.ceil(share * len(errors))))
    return float(np.mean(np.partition(errors, keep - 1)[:keep]))


def trim_schedule(trim, row_errors: Callable[[], np.ndarray], share: float, warmup: int):
    """A Keras callback that sets the cut of `train_step(trim=...)`: from the end of epoch
    `warmup` on (the first epochs learn from every row), after each epoch, to the (1 - share)
    quantile of `row_errors()` (each training row's mean squared error), so about that share
    of the rows, the worst reconstructed, is left out of the next epoch's gradient."""
    import keras

    class TrimSchedule(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 >= warmup:
                trim.assign(float(np.quantile(row_errors(), 1.0 - share)))

    return TrimSchedule()


def _overrides(callback, hook: str) -> bool:
    import keras

    return getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook)


def run_epochs(
    model,
    steps,
    epoch_batches: Callable[[int], Iterable],
    validation_loss: Callable[[], float],
    *,
    epochs: int,
    patience: int,
    steps_per_call: int = STEPS_PER_CALL,
    callbacks: Sequence = (),
    verbose: int = 0,
    steps_per_epoch: int | None = None,
) -> dict[str, list[float]]:
    """Train until `epochs` or early stopping; returns the history `{"loss", "val_loss"}`.

    `steps` is `train_step(...)`; `epoch_batches(k)` gives an epoch's batches in stacks of at
    most k. Early stopping follows `keras.callbacks.EarlyStopping(monitor="val_loss", patience,
    restore_best_weights=True)`: training stops once `patience` epochs in a row have not
    lowered the best validation loss, and the best epoch's weights are restored.
    """
    import keras
    import tensorflow as tf

    cbs = keras.callbacks.CallbackList(list(callbacks), add_progbar=verbose != 0, model=model,
                                       verbose=verbose, epochs=epochs, steps=steps_per_epoch)
    batch_hooks = any(_overrides(c, "on_train_batch_end") or _overrides(c, "on_train_batch_begin")
                      for c in cbs.callbacks)
    per_call = 1 if batch_hooks else steps_per_call
    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    best, best_weights, wait = np.inf, None, 0
    model.stop_training = False
    cbs.on_train_begin()
    for epoch in range(epochs):
        cbs.on_epoch_begin(epoch)
        sums, rows, seen = [], 0, 0.0
        for i, stack in enumerate(epoch_batches(per_call)):
            if batch_hooks:
                cbs.on_train_batch_begin(i)
            sums.append(steps(stack))  # a tensor: no wait for the steps to finish
            rows += int(stack.shape[0] * stack.shape[1])
            if batch_hooks:
                seen += float(sums[-1])
                cbs.on_train_batch_end(i, {"loss": seen / rows})
        # The epoch's loss is the mean over the rows of each step, as Keras reports it.
        loss = float(tf.add_n(sums)) / rows if rows else np.nan
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
