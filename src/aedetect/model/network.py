"""The Keras autoencoder: a plain functional model of standard layers.

A functional model of built-in layers serialises to `.keras` config + weights and loads with
`safe_mode=True` without any custom-object registry, so an artifact never runs project code
(or a pickle) to be rebuilt, and TF runtimes can serve it after export.

An ensemble of `members` networks is the same kind of model: layer i of the chain holds every
member's layer i side by side (`members x units` wide), the first reads the shared input, each
later kernel is block-diagonal (member k's units feed only member k's), and the output holds
each member's reconstruction, member after member (`members x n_features`). Training keeps the
blocks apart (`member_forward` multiplies only the blocks, so the weights between members get
no gradient and stay zero), so the members are trained independently from their own initial
weights, in one pass per batch, at the cost of the members' own products. Every reader of a plain
chain of dense layers (the NumPy runtime, ONNX, the SavedModel, Spark) runs it unchanged; the
residual compares each member's block with the input (`aedetect.model.scores.member_residuals`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np


def build_autoencoder(
    n_features: int,
    hidden_units: Sequence[int] = (20, 8, 20),
    activation: str = "tanh",
    *,
    noise_std: float = 0.0,
    dropout: float = 0.0,
    l2: float = 0.0,
    members: int = 1,
    seed: int = 0,
) -> keras.Model:
    """Dense encoder/decoder: `hidden_units` are the hidden layer sizes, bottleneck included.

    The output layer is linear with `n_features` units. `noise_std` adds Gaussian noise to the
    input while training (a denoising autoencoder); `dropout` acts after each hidden layer.
    `members` > 1: an ensemble of that many such networks in one chain (module docstring),
    each member's weights drawn (Glorot uniform, as Keras') from `seed`.
    """
    if n_features < 1:
        raise ValueError(f"n_features must be positive; got {n_features}")
    if not hidden_units or any(int(u) < 1 for u in hidden_units):
        raise ValueError(f"hidden_units must be positive sizes; got {tuple(hidden_units)!r}")
    if members < 1:
        raise ValueError(f"members must be at least 1; got {members}")
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    if noise_std > 0:
        x = keras.layers.GaussianNoise(noise_std, name="input_noise")(x)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(members * int(units), activation=activation, kernel_regularizer=reg,
                               name=f"hidden_{i}")(x)
        if dropout > 0 and i < len(hidden_units) - 1:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(members * n_features, name="reconstruction")(x)
    model = keras.Model(inputs, outputs, name="tabular_autoencoder")
    if members > 1:
        rng = np.random.default_rng(seed)
        for layer, mask in member_masks(model, members):
            kernel, bias = layer.get_weights()
            rows, cols = kernel.shape[0] // (1 if mask is None else members), kernel.shape[1] // members
            limit = np.sqrt(6.0 / (rows + cols))  # Glorot uniform of one member's layer
            kernel = rng.uniform(-limit, limit, kernel.shape).astype("float32")
            layer.set_weights([kernel if mask is None else kernel * mask, bias])
    return model


def n_members(n_outputs: int, n_features: int) -> int:
    """Members of a chain whose output is `n_outputs` wide for `n_features` inputs."""
    if n_features < 1 or n_outputs % n_features:
        raise ValueError(f"a network with {n_outputs} outputs for {n_features} features is not "
                         "an ensemble of reconstructions")
    return n_outputs // n_features


def member_forward(model: keras.Model, members: int):
    """The training pass of an ensemble chain, `x -> output`, multiplying only the members'
    blocks of each kernel after the first (the product with the whole block-diagonal kernel
    would cost `members` times more and give the same output). Other layers (noise, dropout)
    run in training mode."""
    import tensorflow as tf

    def forward(x):
        h, first = x, True
        for layer in model.layers[1:]:
            if not isinstance(layer, keras.layers.Dense):
                h = layer(h, training=True)
                continue
            kernel = layer.kernel.value
            if first:
                h = tf.matmul(h, kernel)
            else:
                a, b = kernel.shape[0] // members, kernel.shape[1] // members
                h = tf.concat([tf.matmul(h[:, k * a:(k + 1) * a], kernel[k * a:(k + 1) * a, k * b:(k + 1) * b])
                               for k in range(members)], axis=1)
            h, first = layer.activation(h + layer.bias.value), False
        return h

    return forward


def member_masks(model: keras.Model, members: int) -> list[tuple[keras.layers.Dense, np.ndarray | None]]:
    """Each dense layer and the 0/1 mask of its kernel that keeps the members apart: None for
    the first (every member reads the whole input), block-diagonal for the others."""
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    out = []
    for i, layer in enumerate(dense):
        if i == 0 or members == 1:
            out.append((layer, None))
            continue
        rows, cols = (int(s) // members for s in layer.kernel.shape)
        out.append((layer, np.kron(np.eye(members, dtype="float32"), np.ones((rows, cols), "float32"))))
    return out
