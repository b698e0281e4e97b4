"""Typed training configuration shared by the CLI, the Python API and the benchmarks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ThresholdRule = Literal["fixed", "best_f1", "normal_percentile", "min_precision"]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: Literal["guide", "time"] = "guide"
    seed: int = 0
    hidden_units: list[int] = Field(default_factory=lambda: [20, 8, 20])
    activation: str = "tanh"
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(2048, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    patience: int = Field(5, ge=0)
    noise_std: float = Field(0.0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    l2: float = Field(0.0, ge=0)
    input_pipeline: Literal["memory", "tfrecord"] = "memory"
    threshold_rule: ThresholdRule = "normal_percentile"
    threshold_value: float | None = None  # for the fixed rule
    threshold_percentile: float = Field(99.9, gt=0, lt=100)
    min_precision: float = Field(0.93, gt=0, le=1)

    @field_validator("hidden_units")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(u < 1 for u in v):
            raise ValueError(f"hidden_units must be positive sizes, e.g. 20,8,20; got {v}")
        return v

    def detector_params(self) -> dict:
        keys = ("hidden_units", "activation", "epochs", "batch_size", "learning_rate", "patience",
                "noise_std", "dropout", "l2", "threshold_percentile", "seed")
        return {k: getattr(self, k) for k in keys}
