"""What an import from another tool brought in, and what it left out and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MlflowImportResult:
    """What an import brought in, and what it left out and why (one sentence each)."""

    runs: dict[str, str] = field(default_factory=dict)
    imported: int = 0
    already: int = 0
    metric_points: int = 0
    artifacts: int = 0
    skipped: list[str] = field(default_factory=list)
    # The registry: MLflow's ``name/version`` -> clew's ref, aliases set, logged models.
    versions: dict[str, str] = field(default_factory=dict)
    versions_imported: int = 0
    versions_already: int = 0
    aliases: list[str] = field(default_factory=list)
    logged_models: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: MlflowImportResult) -> None:
        self.runs.update(other.runs)
        self.imported += other.imported
        self.already += other.already
        self.metric_points += other.metric_points
        self.artifacts += other.artifacts
        self.skipped.extend(other.skipped)
        self.versions.update(other.versions)
        self.versions_imported += other.versions_imported
        self.versions_already += other.versions_already
        self.aliases.extend(other.aliases)
        self.logged_models += other.logged_models
        self.notes.extend(other.notes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "imported": self.imported,
            "already": self.already,
            "metric_points": self.metric_points,
            "artifacts": self.artifacts,
            "skipped": self.skipped,
            "versions": self.versions,
            "versions_imported": self.versions_imported,
            "versions_already": self.versions_already,
            "aliases": self.aliases,
            "logged_models": self.logged_models,
            "notes": self.notes,
        }


@dataclass
class DvcImportResult:
    """What a DVC import recorded: a clew run per stage that changed since the last import."""

    runs: dict[str, str] = field(default_factory=dict)
    imported: int = 0
    already: int = 0
    artifacts: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "imported": self.imported,
            "already": self.already,
            "artifacts": self.artifacts,
            "notes": self.notes,
        }
