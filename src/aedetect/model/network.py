"""The Keras autoencoder: a plain functional model of standard layers.

A functional model of built-in layers serialises to `.keras` config + weights and loads with
`safe_mode=True` without any custom-object registry, so an artifact never runs project code
(or a pickle) to be rebuilt, and TF runtimes can serve it after export.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def build_autoencoder(
    n_features: int,
    hidden_units: Sequence[int] = (20, 8, 20),
    activation: str = "tanh",
    *,
    noise_std: float = 0.0,
    dropout: float = 0.0,
    l2: float = 0.0,
) -> keras.Model:
    """Dense encoder/decoder: `hidden_units` are the hidden layer sizes, bottleneck included.

    The output layer is linear with `n_features` units. `noise_std` adds Gaussian noise to the
    input while training (a denoising autoencoder); `dropout` acts after each hidden layer.
    """
    if n_features < 1:
        raise ValueError(f"n_features must be positive; got {n_features}")
    if not hidden_units or any(int(u) < 1 for u in hidden_units):
        raise ValueError(f"hidden_units must be positive sizes; got {tuple(hidden_units)!r}")
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    if noise_std > 0:
        x = keras.layers.GaussianNoise(noise_std, name="input_noise")(x)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(int(units), activation=activation, kernel_regularizer=reg,
                               name=f"hidden_{i}")(x)
        if dropout > 0 and i < len(hidden_units) - 1:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(n_features, name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="tabular_autoencoder")
