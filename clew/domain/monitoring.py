"""Monitoring values every check shares: the window it reads, what it found, what it reports.

A check (data quality, drift, model quality) reads one ``Window`` of captured predictions of one
model version and returns a ``CheckReport``. The report carries SageMaker Model Monitor's
``constraint_violations.json`` shape (``Violation.to_sagemaker``) so teams can feed it to tools
they already run, plus clew's own metrics. The monitor runner (clew/service) records each report
as a run in lineage and hands its violations to the policy that says what they do. Nothing here
does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clew.errors import InvalidInputError

# SageMaker Model Monitor's names for the kinds of violation (constraint_violations.json).
CHECK_TYPES = (
    "data_type_check",
    "completeness_check",
    "baseline_drift_check",
    "missing_column_check",
    "extra_column_check",
    "categorical_values_check",
    "numeric_bounds_check",
    "model_quality_check",
)


@dataclass(frozen=True)
class Window:
    """Which captured predictions a check reads: one model version, a time range or the last N.

    ``start_ms`` is inclusive and ``end_ms`` exclusive, so consecutive windows of a schedule never
    share a prediction; ``last_n`` alone means the newest N predictions.
    """

    model: str
    version: int
    start_ms: int | None = None
    end_ms: int | None = None
    last_n: int | None = None

    def __post_init__(self) -> None:
        if self.last_n is not None and self.last_n <= 0:
            raise InvalidInputError(f"last_n must be a positive count, not {self.last_n}.")
        if self.start_ms is not None and self.end_ms is not None and self.end_ms <= self.start_ms:
            raise InvalidInputError(
                "A monitoring window must end after it starts; "
                f"got start {self.start_ms} and end {self.end_ms} (milliseconds)."
            )

    @property
    def key(self) -> str:
        """A stable name for the window: a run for the same window is the same run (idempotent)."""
        bounds = f"{self.start_ms or ''}-{self.end_ms or ''}"
        last = f"last{self.last_n}" if self.last_n is not None else ""
        return f"{self.model}/{self.version}:{bounds}:{last}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "last_n": self.last_n,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Window:
        return cls(
            model=str(data["model"]),
            version=int(data["version"]),
            start_ms=data.get("start_ms"),
            end_ms=data.get("end_ms"),
            last_n=data.get("last_n"),
        )


@dataclass(frozen=True)
class Violation:
    """One broken constraint, in SageMaker's vocabulary plus the figures that broke it."""

    feature_name: str
    constraint_check_type: str
    description: str
    observed: float | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.constraint_check_type not in CHECK_TYPES:
            raise InvalidInputError(
                f"Unknown constraint check type {self.constraint_check_type!r}; "
                f"use one of {', '.join(CHECK_TYPES)}."
            )

    def to_sagemaker(self) -> dict[str, str]:
        """The entry of ``constraint_violations.json`` (SageMaker's three fields, nothing more)."""
        return {
            "feature_name": self.feature_name,
            "constraint_check_type": self.constraint_check_type,
            "description": self.description,
        }


@dataclass(frozen=True)
class CheckReport:
    """What one check found over one window: its figures and the constraints it saw broken."""

    check: str
    window: Window
    rows: int
    metrics: Mapping[str, Any] = field(default_factory=dict)
    violations: tuple[Violation, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.violations

    def constraint_violations(self) -> dict[str, list[dict[str, str]]]:
        """SageMaker Model Monitor's ``constraint_violations.json`` document."""
        return {"violations": [violation.to_sagemaker() for violation in self.violations]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckReport:
        """The report ``to_dict`` wrote (a server's answer read back by the remote client)."""
        return cls(
            check=str(data["check"]),
            window=Window.from_dict(data["window"]),
            rows=int(data["rows"]),
            metrics=dict(data.get("metrics") or {}),
            violations=tuple(
                Violation(
                    feature_name=v["feature_name"],
                    constraint_check_type=v["constraint_check_type"],
                    description=v["description"],
                    observed=v.get("observed"),
                    threshold=v.get("threshold"),
                )
                for v in data.get("violations") or []
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """clew's richer report: the window, the row count, every figure and every violation."""
        return {
            "check": self.check,
            "window": self.window.to_dict(),
            "rows": self.rows,
            "passed": self.passed,
            "metrics": dict(self.metrics),
            "violations": [
                {
                    **violation.to_sagemaker(),
                    "observed": violation.observed,
                    "threshold": violation.threshold,
                }
                for violation in self.violations
            ],
        }
