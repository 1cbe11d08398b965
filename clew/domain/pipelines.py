"""Pipelines as plain values: the tags a step run carries, and a pipeline drawn as a tree.

A pipeline execution is a run of kind ``pipeline``; each step is a child run of kind ``step``
tagged with its cache key (the digest of its code, parameters and input digests) and with what
it returned, so a later execution with the same key can reuse those outputs instead of
running again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PIPELINE_KIND = "pipeline"
STEP_KIND = "step"
STEP_KEY_TAG = "clew.step.key"  # digest of code, params and input digests
STEP_OUTPUTS_TAG = "clew.step.outputs"  # JSON: what the step returned, to rebuild on reuse
STEP_REUSED_TAG = "clew.step.reused_from"  # on a skipped step: the run whose outputs it reused
PIPELINE_TAG = "clew.pipeline"


@dataclass(frozen=True)
class CachedStep:
    """An earlier successful run of a step with the same cache key, and what it returned."""

    run_id: str
    outputs: dict[str, Any]


@dataclass(frozen=True)
class StepView:
    """One step run of a pipeline execution, with what it read and wrote."""

    run_id: str
    name: str
    status: str
    start_ms: int
    end_ms: int | None
    key: str | None
    reused_from: str | None
    params: dict[str, str] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return self.reused_from is not None


@dataclass(frozen=True)
class PipelineView:
    """One pipeline execution: its run and its steps in the order they started."""

    run_id: str
    name: str
    status: str
    user: str
    start_ms: int
    end_ms: int | None
    steps: list[StepView] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for step, view in zip(data["steps"], self.steps, strict=True):
            step["skipped"] = view.skipped
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineView:
        values = {k: v for k, v in data.items() if k != "steps"}
        steps = [
            StepView(**{k: v for k, v in step.items() if k != "skipped"})
            for step in data.get("steps", [])
        ]
        return cls(**values, steps=steps)
