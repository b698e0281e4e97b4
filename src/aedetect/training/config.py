"""The training run's configuration, shared by the CLI, the Python API and the benchmarks.

Detector hyperparameters are not declared here: they are `AutoencoderDetector`'s parameters,
checked by its `_parameter_constraints` (scikit-learn's validation), so each is defined once.
A `TrainConfig` holds the run around the detector (split protocol, seed, input pipeline, the
threshold rule and its parameters) and a `detector` dict of the estimator's parameters; any
estimator parameter given at the top level (`TrainConfig(epochs=5)`) goes into that dict.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aedetect.data.creditcard import AMOUNT
from aedetect.errors import AedetectError
from aedetect.model.detector import AutoencoderDetector
from aedetect.model.thresholds import RULES

DETECTOR_PARAMS = tuple(AutoencoderDetector._parameter_constraints)
MAX_SEED = 2**32 - 1  # NumPy's and Keras's seeds are 32-bit


def detector_defaults() -> dict:
    return AutoencoderDetector().get_params()


def check_detector_params(params: dict) -> dict:
    """Raise ValueError naming the parameter when one is unknown or outside its constraints."""
    from sklearn.utils._param_validation import validate_parameter_constraints

    unknown = sorted(set(params) - set(DETECTOR_PARAMS))
    if unknown:
        raise ValueError(f"unknown detector parameter(s) {unknown}; valid: {', '.join(DETECTOR_PARAMS)}")
    for k, v in params.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{k} must be a finite number; got {v}")
    constraints = {k: AutoencoderDetector._parameter_constraints[k] for k in params}
    validate_parameter_constraints(constraints, params, caller_name="AutoencoderDetector")
    if "hidden_units" in params:
        from aedetect.model.detector import check_hidden_units

        check_hidden_units(params["hidden_units"])
    return params


class TrainConfig(BaseModel):
    # Every number is finite: NaN or Infinity (JSON and YAML spell them) is refused by name.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # auto: time-ordered when the table has a time column, else the guide's (data/splits.py)
    protocol: Literal["guide", "time", "auto"] = "auto"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    input_pipeline: Literal["memory", "tfrecord"] = "memory"
    # AutoencoderDetector parameters (see its docstring); the seed above is the detector's seed.
    detector: dict[str, Any] = {}
    # The threshold rule (aedetect.model.thresholds.RULES) and its parameters.
    threshold_rule: str = "normal_percentile"
    threshold_value: float | None = None  # for the fixed rule; None: its default, the guide's 10
    min_precision: float = Field(0.93, gt=0, le=1)
    max_fpr: float = Field(0.001, ge=0, lt=1)
    alerts_per_day: float = Field(50.0, gt=0)
    cost_missed: float = Field(100.0, ge=0)  # per missed anomaly (times its amount with cost_per_amount)
    cost_review: float = Field(5.0, ge=0)  # per flagged row an analyst reviews
    cost_per_amount: bool = False
    amount_column: str = AMOUNT  # the column cost_per_amount reads; the credit-card one by default
    contamination: float = Field(0.001, gt=0, lt=0.5)
    # Label-aware mode (aedetect.model.hybrid): a supervised head on the autoencoder's residual features.
    use_labels: bool = False
    min_anomalies: int = Field(3, ge=1)  # fewer labelled anomalies to learn from: autoencoder alone
    # With --use-labels and entity history: each entity's fraud rate over windows ending this many
    # days before the row (labels arrive late; `HistorySpec.label_delay`); null: no label-based risk.
    label_delay_days: float | None = Field(7.0, gt=0, lt=10_000)
    # With entity history: the rows of the history's first days (at most half the table's span)
    # serve as history only, not as training, validation, selection or test rows. In its first
    # weeks every pair is new and every window short of a month; a model trained on such rows
    # reads later rows wrongly (docs/history.md, "Why: the young history of a 40-day log"). The
    # label-aware head (`use_labels`) still learns from those rows: their labels are real.
    history_warmup_days: float = Field(20.0, ge=0, lt=10_000)
    # The time protocol's test window: the latest share of rows, evaluated after training and
    # never trained on. 0: no test window (labels only on the latest rows, e.g. the verdicts on
    # last week's alerts, which the label-aware head should learn from; judge the model on later
    # data). `--test-data` takes 0: its file is the test.
    test_share: float = Field(0.2, ge=0, le=0.5)

    @model_validator(mode="before")
    @classmethod
    def _gather_detector_params(cls, data):
        """Estimator parameters given at the top level move into `detector`."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        detector = dict(data.get("detector") or {})
        for key in [k for k in data if k in DETECTOR_PARAMS and k != "seed"]:
            detector[key] = data.pop(key)
        if "score" in data:  # the parameter's old name
            detector["score_type"] = data.pop("score")
        if "score" in detector:
            detector["score_type"] = detector.pop("score")
        seed = detector.pop("seed", None)  # the run's seed is the detector's seed
        if seed is not None:
            data.setdefault("seed", seed)
        data["detector"] = detector
        return data

    @field_validator("detector")
    @classmethod
    def _check_detector(cls, v: dict) -> dict:
        return check_detector_params(dict(v))

    @field_validator("threshold_rule")
    @classmethod
    def _check_rule(cls, v: str) -> str:
        if v not in RULES:
            raise ValueError(f"threshold_rule must be one of {tuple(RULES)}; got {v!r}")
        return v

    def detector_params(self) -> dict:
        """The given estimator parameters, with the run's seed."""
        return {**self.detector, "seed": self.seed}

    def param(self, name: str):
        """A setting by name: a run field, or an estimator parameter (its default when not given)."""
        if name in type(self).model_fields:
            return getattr(self, name)
        return {**detector_defaults(), **self.detector_params()}[name]


# Named starting points; explicit options override them.
PRESETS: dict[str, dict] = {
    "default": {},
    # The guide: one dense 20-8-20 tanh network, MSE score, 5 epochs at batch 256, on the guide's split.
    "guide": {"protocol": "guide", "detector": {"hidden_units": [20, 8, 20], "activation": "tanh", "epochs": 5,
                           "batch_size": 256, "learning_rate": 1e-3, "score_type": "mse",
                           "members": 1}},
}


def parse_value(text: str):
    """A --set value: JSON when it parses (numbers, true/false, lists), a comma list of such
    values, else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [parse_value(part.strip()) for part in text.split(",") if part.strip()]
    return text


def parse_settings(pairs: list[str]) -> dict:
    """`["epochs=20", "hidden_units=20,8,20"]` -> {"epochs": 20, "hidden_units": [20, 8, 20]}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AedetectError(f"--set takes key=value, e.g. --set epochs=20; got {pair!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def read_config_file(path: str | Path) -> dict:
    """Settings from a JSON (or, with PyYAML installed, YAML) file."""
    from aedetect.files import read_yaml_or_json

    path = Path(path)
    data = read_yaml_or_json(path, "config file")
    if not isinstance(data, dict):
        raise AedetectError(f"{path}: expected a mapping of settings; got {type(data).__name__}")
    return data


def build_config(preset: str = "default", *layers: dict) -> TrainConfig:
    """A TrainConfig from a preset and layers of settings, later layers winning; estimator
    parameters may sit at the top level or under `detector`."""
    if preset not in PRESETS:
        raise AedetectError(f"--preset must be one of {sorted(PRESETS)}; got {preset!r}")
    merged: dict = {}
    detector: dict = {}
    known = set(TrainConfig.model_fields) | set(DETECTOR_PARAMS)
    for layer in (PRESETS[preset], *layers):
        layer = dict(layer)
        unknown = sorted(set(layer) - known)
        if unknown:
            raise AedetectError(f"unknown setting(s) {unknown}; settings are the detector's parameters "
                                f"({', '.join(DETECTOR_PARAMS)}) and {', '.join(sorted(TrainConfig.model_fields))}")
        detector.update(layer.pop("detector", None) or {})
        for k, v in layer.items():
            if k in DETECTOR_PARAMS and k != "seed":
                detector[k] = v
            else:
                merged[k] = v
    return TrainConfig(**merged, detector=detector)


def settings_help() -> str:
    """Every setting --set takes, with its default: the estimator's parameters and the run's."""
    defaults = detector_defaults()
    det = ", ".join(f"{k}={json.dumps(v) if not isinstance(v, tuple) else list(v)}"
                    for k, v in defaults.items() if k != "seed")
    run = ", ".join(f"{k}={f.default}" for k, f in TrainConfig.model_fields.items()
                    if k not in ("detector", "protocol", "seed", "threshold_rule", "input_pipeline"))
    return f"detector: {det}; threshold rules: {run}"
