"""Request bodies of the JSON API, as pydantic models that refuse unknown fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from egide.core.evaluate import EvaluationConfig

MAX_IMAGES = 2048  # images one job may attack (EGIDE_MAX_IMAGES)


class AttackJob(BaseModel):
    """Run one attack on a named model and data set."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["attack"]
    plugin: str = Field(description="Attack plugin name, e.g. 'fgsm'")
    params: dict[str, Any] = Field(default_factory=dict, description="The attack's parameters")
    model: str = Field("brain-tumor-cnn", description="Named model (GET /api/v1/models)")
    data: str = Field("brain-tumor-phantom", description="Named data set (GET /api/v1/datasets)")
    split: str | None = Field("test", description="Split of the data set")
    limit: int | None = Field(64, ge=1, description="Attack only the first N images")
    batch_size: int = Field(128, ge=1, le=1024)
    seed: int = Field(0, ge=0)
    target: int | str | None = Field(
        None, description="Targeted attacks: a class index or name for every image, or 'next'"
    )


class EvaluateJob(BaseModel):
    """Run an evaluation (attacks x epsilons) and write report.html and report.json."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["evaluate"]
    config: EvaluationConfig = Field(default_factory=EvaluationConfig)
