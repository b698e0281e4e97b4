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
    hidden_units: list[int] = Field(default_factory=lambda: [20, 8, 20])
    activation: str = "tanh"
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    patience: int = Field(5, ge=0)
    noise_std: float = Field(0.0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    l2: float = Field(0.0, ge=0)
    score: Literal["mse", "feature_normalized", "residual_mahalanobis"] = "mse"
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
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(u < 1 for u in v):
            raise ValueError(f"hidden_units must be positive sizes, e.g. 20,8,20; got {v}")
        return v

    def detector_params(self) -> dict:
        keys = ("hidden_units", "activation", "epochs", "batch_size", "learning_rate", "patience",
                "noise_std", "dropout", "l2", "score", "threshold_percentile", "seed")
        return {k: getattr(self, k) for k in keys}
