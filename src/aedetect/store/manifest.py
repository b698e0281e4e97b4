"""The manifest of a model folder: one pydantic model that checks its types and that its parts
add up.

The manifest's file hashes cover `model.keras`, not the manifest itself, so an edited manifest
(a NaN or negative threshold, a reordered input schema, statistics of the wrong shape) would
load and score every row wrongly without a word. `Manifest` refuses such a manifest with the
reason when it is built or read: its sections are typed strictly (the JSON as written: a `true`
threshold is no number), and a validator checks that they fit together. It reads plain data, so
it needs no TensorFlow and runs before the network loads; `check_network_width` checks the width
the network expects, once known.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictStr,
    ValidationError,
    model_validator,
)

from aedetect.store.layout import numeric_blocks, output_names


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError(f"must be a finite number; got {v!r}")
    return v


Finite = Annotated[float, Strict(), AfterValidator(_finite)]  # ints pass, booleans and text do not
Positive = Annotated[Finite, Field(gt=0)]
Names = Annotated[list[StrictStr], Field(min_length=1)]


def _unique(names: list[str], what: str) -> None:
    seen, dup = set(), []
    for n in names:
        if n in seen:
            dup.append(n)
        seen.add(n)
    if dup:
        raise ValueError(f"{what} repeats column(s) {dup}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


class ThresholdSection(BaseModel):
    rule: StrictStr
    value: Finite
    params: dict = {}
    source: str = ""
    estimate: dict = {}
    warnings: list[str] = []

    @model_validator(mode="after")
    def _not_below_zero(self):
        # Every score is a sum of squares or a quadratic form with a positive semi-definite
        # matrix, so it is >= 0: a negative threshold would flag every row.
        if self.value < 0:
            raise ValueError(f"threshold {self.value!r} is below 0, the lowest possible score: "
                             "every row would be flagged")
        return self


class InputSchema(BaseModel):
    feature_names: Names
    named: bool = True
    dtypes: dict[str, str] = {}

    @model_validator(mode="after")
    def _distinct(self):
        _unique(self.feature_names, "input_schema.feature_names")
        return self


class PreprocessingSection(_Section):
    feature_names: Names
    log_columns: list[StrictStr] = []
    periodic_columns: list[tuple[StrictStr, Positive]] = []
    output_names: Names
    mean: list[Finite]
    scale: list[Positive]


def _expected_outputs(pre: PreprocessingSection) -> list[str]:
    blocks = (pre.model_extra or {}).get("blocks")
    if blocks is None:  # the numbers-only layout of older folders
        return output_names(numeric_blocks(pre.feature_names, pre.log_columns, pre.periodic_columns))
    if not isinstance(blocks, list) or [b.get("column") if isinstance(b, dict) else None
                                        for b in blocks] != pre.feature_names:
        raise ValueError("preprocessing.blocks must hold one block per column of "
                         "preprocessing.feature_names, in order")
    try:
        return output_names([dict(b) for b in blocks])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"preprocessing.blocks cannot be read: {exc!r}") from None


def _check_stats(kind: str, stats: dict[str, Any], width: int, members: int = 1) -> None:
    """Shapes and values of the score statistics: `width` preprocessed features, `members`
    networks (one residual per member and feature; one precision per member)."""
    precision = (width, width) if members == 1 else (members, width, width)
    shapes = {"mse": {}, "feature_normalized": {"scale": (width * members,)},
              "residual_mahalanobis": {"mean": (width * members,), "precision": precision}}.get(kind)
    if shapes is None:
        raise ValueError(f"detector_params.score_type {kind!r} is not a known score")
    for key, shape in shapes.items():
        if key not in stats:
            raise ValueError(f"score_stats.{key} is missing; score {kind!r} needs it")
        try:
            arr = np.asarray(stats[key], dtype="float64")
        except (TypeError, ValueError):
            raise ValueError(f"score_stats.{key} is not an array of numbers") from None
        if arr.shape != shape:
            raise ValueError(f"score_stats.{key} has shape {arr.shape}; the network's "
                             f"{width} preprocessed features (x {members} member(s)) need {shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"score_stats.{key} holds values that are not finite")
    if kind == "feature_normalized" and (np.asarray(stats["scale"]) <= 0).any():
        raise ValueError("score_stats.scale must be > 0")
    if kind == "residual_mahalanobis":
        p = np.asarray(stats["precision"], dtype="float64")
        pt = np.swapaxes(p, -1, -2)  # one matrix, or one per member
        if not np.allclose(p, pt, rtol=1e-6, atol=1e-9):
            raise ValueError("score_stats.precision is not symmetric")
        if np.linalg.eigvalsh((p + pt) / 2).min() < -1e-6 * max(1.0, np.abs(p).max()):
            raise ValueError("score_stats.precision is not positive semi-definite (scores "
                             "could be negative)")


class TrainingSection(BaseModel):
    n_train: int = Field(ge=0)
    n_validation: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    hidden_units: list[int]
    data_fingerprint: str
    epochs_run: int = Field(ge=0)
    best_epoch: int = Field(ge=0)
    history: dict[str, list[float]]
    split: dict | None = None  # protocol, seed, data fingerprint of a train_detector run
    members: int = Field(1, ge=1)  # networks in the ensemble (older folders: one)


class Manifest(BaseModel):
    """A model folder's `manifest.json`. Building or validating one checks every rule above."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["aedetect-artifact"]
    format_version: int
    created_at: str
    versions: dict[str, str]
    detector_params: dict
    detector_param_types: dict[str, str] = {}
    input_schema: InputSchema
    preprocessing: dict  # read by `Preprocessor.from_config`; checked as a PreprocessingSection
    score_stats: dict = {}
    threshold: ThresholdSection
    training: TrainingSection
    metadata: dict = {}
    files: dict[str, str]

    @model_validator(mode="after")
    def _parts_add_up(self):
        try:
            pre = PreprocessingSection.model_validate(self.preprocessing)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in ("preprocessing", *first["loc"]))
            raise ValueError(f"{loc}: {first['msg'].removeprefix('Value error, ')}") from None
        names = self.input_schema.feature_names
        if names != pre.feature_names:
            raise ValueError(f"input_schema.feature_names {names} differ from the columns the "
                             f"preprocessing was fitted on, in that order: {pre.feature_names}")
        expected = _expected_outputs(pre)
        if pre.output_names != expected:
            raise ValueError(f"preprocessing.output_names {pre.output_names} do not follow from its "
                             f"columns and transforms: expected {expected}")
        width = len(expected)
        for key in ("mean", "scale"):
            if len(getattr(pre, key)) != width:
                raise ValueError(f"preprocessing.{key} holds {len(getattr(pre, key))} values for "
                                 f"{width} preprocessed features")
        params = self.detector_params
        if params.get("schema") is None and "log_columns" in params and \
                sorted(params["log_columns"]) != sorted(pre.log_columns):  # a schema decides these itself
            raise ValueError(f"detector_params.log_columns {params['log_columns']} differ from "
                             f"preprocessing.log_columns {pre.log_columns}")
        kind = params.get("score_type", params.get("score", "mse"))  # "score" in older manifests
        _check_stats(kind, self.score_stats, width, self.training.members)
        return self

    @property
    def width(self) -> int:
        """The number of preprocessed features: the network's input width."""
        return len(self.preprocessing["output_names"])

    def check_network_width(self, network_input_width: int) -> None:
        if network_input_width != self.width:
            raise ValueError(f"the network takes {network_input_width} inputs but the preprocessing "
                             f"gives {self.width} features")

    def sections(self) -> dict:
        """The detector's state sections as plain JSON values."""
        keys = ("detector_params", "detector_param_types", "input_schema", "preprocessing", "score_stats",
                "threshold", "training")
        return {k: v for k, v in self.model_dump().items() if k in keys}


def first_error(exc: ValidationError) -> str:
    """The first problem of a ValidationError as `where: what`."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return f"field {loc!r}: {msg}" if loc else msg


def check_manifest_semantics(manifest, network_input_width: int | None = None) -> None:
    """Raise ValueError with the reason when a manifest (a dict, as written) does not describe one
    consistent model; with `network_input_width`, also when the network does not fit it."""
    try:
        m = manifest if isinstance(manifest, Manifest) else Manifest.model_validate(manifest)
    except ValidationError as exc:
        raise ValueError(first_error(exc)) from None
    if network_input_width is not None:
        m.check_network_width(network_input_width)
