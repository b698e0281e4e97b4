"""Typed training configuration shared by the CLI, the Python API and the benchmarks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ThresholdRule = Literal["fixed", "best_f1", "normal_percentile", "min_precision", "max_fpr",
                        "alert_budget", "expected_cost", "contamination"]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: Literal["guide", "time"] = "guide"
    seed: int = 0
    # Defaults: a wider ReLU network scored by the Mahalanobis distance of its residuals; see
    # docs/experiments.md for the runs behind them. PRESETS["guide"] is the guide's recipe.
    hidden_units: list[int] | Literal["auto"] = "auto"  # auto: 64-32-code-32-64, see the detector
    activation: str = "relu"
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(2048, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    patience: int = Field(5, ge=0)
    noise_std: float = Field(0.0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    l2: float = Field(0.0, ge=0)
    score: Literal["mse", "feature_normalized", "residual_mahalanobis"] = "residual_mahalanobis"
    input_pipeline: Literal["memory", "tfrecord"] = "memory"
    threshold_rule: ThresholdRule = "normal_percentile"
    threshold_value: float | None = None  # for the fixed rule
    threshold_percentile: float = Field(99.9, gt=0, lt=100)
    min_precision: float = Field(0.93, gt=0, le=1)
    max_fpr: float = Field(0.001, ge=0, lt=1)
    alerts_per_day: float = Field(50.0, gt=0)
    cost_missed: float = Field(100.0, ge=0)  # per missed anomaly (times Amount with cost_per_amount)
    cost_review: float = Field(5.0, ge=0)  # per flagged row an analyst reviews
    cost_per_amount: bool = False
    contamination: float = Field(0.001, gt=0, lt=0.5)

    @field_validator("hidden_units")
    @classmethod
    def _positive(cls, v):
        if v != "auto" and (not v or any(u < 1 for u in v)):
            raise ValueError(f"hidden_units must be 'auto' or positive sizes, e.g. 20,8,20; got {v}")
        return v

    def detector_params(self) -> dict:
        keys = ("hidden_units", "activation", "epochs", "batch_size", "learning_rate", "patience",
                "noise_std", "dropout", "l2", "score", "threshold_percentile", "seed")
        return {k: getattr(self, k) for k in keys}


# Named starting points; explicit options override them.
PRESETS: dict[str, dict] = {
    "default": {},
    # The guide: dense 20-8-20 tanh, MSE score, 5 epochs at batch 256.
    "guide": {"hidden_units": [20, 8, 20], "activation": "tanh", "epochs": 5, "batch_size": 256,
              "learning_rate": 1e-3, "score": "mse"},
}


def default_of(name: str):
    """A TrainConfig field's default, for help texts."""
    field = TrainConfig.model_fields[name]
    return field.default_factory() if field.default_factory else field.default
