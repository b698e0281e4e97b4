"""The weights format: a model's dense layers as plain arrays, read back without TensorFlow.

`weights.npz` holds `kernel_<i>`, `bias_<i>` and `activation_<i>` for each dense layer, in order;
noise and dropout layers do nothing at inference and are not stored. The detector writes it
beside `model.keras` at save time (listed with its sha256 in the manifest); the NumPy runtime,
Spark workers and exports read it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from aedetect.errors import ArtifactError

WEIGHTS_FILE = "weights.npz"


def _relu(h: np.ndarray) -> np.ndarray:
    return np.maximum(h, 0, out=h)


def _tanh(h: np.ndarray) -> np.ndarray:
    return np.tanh(h, out=h)


def _sigmoid(h: np.ndarray) -> np.ndarray:
    np.negative(h, out=h)
    np.exp(h, out=h)
    h += 1
    return np.reciprocal(h, out=h)


def _linear(h: np.ndarray) -> np.ndarray:
    return h


ACTIVATIONS = {"relu": _relu, "tanh": _tanh, "sigmoid": _sigmoid, "linear": _linear}


# Layers that pass their input through unchanged outside training.
INFERENCE_IDENTITY = ("InputLayer", "GaussianNoise", "Dropout")


def member_blocks(kernel: np.ndarray, members: int) -> list[np.ndarray]:
    """The diagonal blocks of an ensemble's block-diagonal kernel (`aedetect.model.network`),
    member by member, each a contiguous array."""
    rows, cols = kernel.shape[0] // members, kernel.shape[1] // members
    return [np.ascontiguousarray(kernel[m * rows:(m + 1) * rows, m * cols:(m + 1) * cols])
            for m in range(members)]


def dense_layers(model) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(kernel, bias, activation) of each Dense layer of a Keras model, in order."""
    layers = []
    for layer in model.layers:
        if type(layer).__name__ == "Dense":
            kernel, bias = layer.get_weights()
            layers.append((np.asarray(kernel, "float32"), np.asarray(bias, "float32"),
                           layer.get_config()["activation"]))
        elif type(layer).__name__ not in INFERENCE_IDENTITY:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no NumPy counterpart")
    return layers


def save_weights(model, path: str | os.PathLike) -> Path:
    """Write the dense layers of `model` as `weights.npz` (plain arrays, no pickle)."""
    arrays = {}
    for i, (kernel, bias, activation) in enumerate(dense_layers(model)):
        arrays[f"kernel_{i}"], arrays[f"bias_{i}"] = kernel, bias
        arrays[f"activation_{i}"] = np.array(activation)
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def read_weights(path: Path) -> list[tuple[np.ndarray, np.ndarray, str]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read the weights: {exc}") from None
    layers = []
    while f"kernel_{len(layers)}" in data:
        i = len(layers)
        try:
            kernel, bias = data[f"kernel_{i}"].astype("float32"), data[f"bias_{i}"].astype("float32")
            activation = str(data[f"activation_{i}"])
        except KeyError as exc:
            raise ArtifactError(f"{path}: layer {i} lacks {exc.args[0]}") from None
        if activation not in ACTIVATIONS:
            raise ArtifactError(f"{path}: layer {i} has activation {activation!r}; "
                                f"the runtime computes {sorted(ACTIVATIONS)}")
        if kernel.ndim != 2 or bias.shape != (kernel.shape[1],) or (
                layers and layers[-1][0].shape[1] != kernel.shape[0]):
            raise ArtifactError(f"{path}: layer {i} has kernel {kernel.shape} and bias {bias.shape}, "
                                "which do not chain with the layer before")
        layers.append((kernel, bias, activation))
    if not layers:
        raise ArtifactError(f"{path}: holds no dense layers")
    return layers


def code_layer(widths: list[int]) -> int | None:
    """Which dense layer gives the code, from the layers' output widths: the first of the
    narrowest hidden layers (the last layer is the reconstruction); None without a hidden one."""
    hidden = widths[:-1]
    return min(range(len(hidden)), key=lambda i: hidden[i]) if hidden else None


def bottleneck(layers, x: np.ndarray) -> np.ndarray:
    """The narrowest hidden layer's activations (the code; an ensemble's: every member's side
    by side) for preprocessed rows `x`, in float64 from the stored float32 weights.

    The label-aware head reads these codes; training and every scoring engine compute them with
    this one function, so the head sees the same numbers wherever it runs (the Keras layer's
    float32 output differed from it by about 1e-7, enough to move a row across a tree's split).
    """
    stop = code_layer([kernel.shape[1] for kernel, _, _ in layers])
    if stop is None:
        raise ValueError("the network has no hidden layer, so no code")
    h = np.asarray(x, dtype="float64")
    for kernel, bias, activation in layers[:stop + 1]:
        h = h @ np.asarray(kernel, dtype="float64")
        h += np.asarray(bias, dtype="float64")
        h = ACTIVATIONS[activation](h)
    return h
