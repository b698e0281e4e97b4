"""Semantic checks of a model folder's manifest: does what it says add up?

The manifest's file hashes cover `model.keras`, not the manifest itself, so an edited manifest
(a NaN or negative threshold, a reordered input schema, statistics of the wrong shape) would
load and score every row wrongly without a word. `check_manifest_semantics` refuses such a
folder with the reason. It reads plain dicts (a manifest's sections), so it needs no
TensorFlow and runs before the network loads; `network_input_width` checks the width the
network expects, once known.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

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

from aedetect.errors import ArtifactError
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


class ThresholdSection(_Section):
    rule: StrictStr
    value: Finite

    @model_validator(mode="after")
    def _not_below_zero(self):
        # Every score is a sum of squares or a quadratic form with a positive semi-definite
        # matrix, so it is >= 0: a negative threshold would flag every row.
        if self.value < 0:
            raise ValueError(f"threshold {self.value!r} is below 0, the lowest possible score: "
                             "every row would be flagged")
        return self


class InputSchemaSection(_Section):
    feature_names: Names

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


def _check_stats(kind: str, stats: dict[str, Any], width: int) -> None:
    shapes = {"mse": {}, "feature_normalized": {"scale": (width,)},
              "residual_mahalanobis": {"mean": (width,), "precision": (width, width)}}.get(kind)
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
                             f"{width} preprocessed features need {shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"score_stats.{key} holds values that are not finite")
    if kind == "feature_normalized" and (np.asarray(stats["scale"]) <= 0).any():
        raise ValueError("score_stats.scale must be > 0")
    if kind == "residual_mahalanobis":
        p = np.asarray(stats["precision"], dtype="float64")
        if not np.allclose(p, p.T, rtol=1e-6, atol=1e-9):
            raise ValueError("score_stats.precision is not symmetric")
        if np.linalg.eigvalsh((p + p.T) / 2).min() < -1e-6 * max(1.0, np.abs(p).max()):
            raise ValueError("score_stats.precision is not positive semi-definite (scores "
                             "could be negative)")


def check_manifest_semantics(manifest, network_input_width: int | None = None) -> None:
    """Raise ValueError with the reason when the manifest's parts do not fit together.

    `manifest`: a pydantic manifest or its dict. Checks: a finite threshold >= 0; input schema
    names distinct and equal, in order, to the preprocessing's; the preprocessing's outputs,
    means and scales consistent with its columns; score statistics of the shapes the score
    needs; the detector's log and periodic columns equal to the preprocessing's; and, when
    given, the network's input width equal to the preprocessed width.
    """
    d = manifest.model_dump() if hasattr(manifest, "model_dump") else dict(manifest)
    try:
        threshold = ThresholdSection.model_validate(d.get("threshold"))
        schema = InputSchemaSection.model_validate(d.get("input_schema"))
        pre = PreprocessingSection.model_validate(d.get("preprocessing"))
    except ValidationError as exc:
        first = exc.errors()[0]
        section = exc.title.removesuffix("Section").lower().replace("inputschema", "input_schema")
        loc = ".".join(str(p) for p in (section, *first["loc"]))
        raise ValueError(f"{loc}: {first['msg'].removeprefix('Value error, ')}") from None
    del threshold
    if schema.feature_names != pre.feature_names:
        raise ValueError(f"input_schema.feature_names {schema.feature_names} differ from the "
                         f"columns the preprocessing was fitted on, in that order: {pre.feature_names}")
    expected = _expected_outputs(pre)
    if pre.output_names != expected:
        raise ValueError(f"preprocessing.output_names {pre.output_names} do not follow from its "
                         f"columns and transforms: expected {expected}")
    width = len(expected)
    for key in ("mean", "scale"):
        if len(getattr(pre, key)) != width:
            raise ValueError(f"preprocessing.{key} holds {len(getattr(pre, key))} values for "
                             f"{width} preprocessed features")
    params = d.get("detector_params") or {}
    if params.get("schema") is None and "log_columns" in params and \
            sorted(params["log_columns"]) != sorted(pre.log_columns):  # a schema decides these itself
        raise ValueError(f"detector_params.log_columns {params['log_columns']} differ from "
                         f"preprocessing.log_columns {pre.log_columns}")
    kind = params.get("score_type", params.get("score", "mse"))  # "score" in older manifests
    _check_stats(kind, d.get("score_stats") or {}, width)
    if network_input_width is not None and network_input_width != width:
        raise ValueError(f"the network takes {network_input_width} inputs but the preprocessing "
                         f"gives {width} features")


def refuse_if_inconsistent(manifest, where, network_input_width: int | None = None) -> None:
    """`check_manifest_semantics`, raising ArtifactError that names the manifest file."""
    try:
        check_manifest_semantics(manifest, network_input_width)
    except ValueError as exc:
        raise ArtifactError(f"{where}: {exc}; the folder does not describe one consistent model") from None
