"""Imports from other tools over HTTP: each page the SDK read is one request, one transaction
on the server, returning the same values as the import services."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clew.client.transport import Transport
from clew.domain.imports import DvcImportResult, MlflowImportResult


class RemoteMlflowImport:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def import_runs(self, runs: Sequence[Mapping[str, Any]], actor: str) -> MlflowImportResult:
        """``actor`` is the token's user on the server."""
        data = self._t.call("POST", "/imports/mlflow/runs", json_body={"runs": list(runs)})
        return MlflowImportResult(**data)

    def import_models(
        self, page: Mapping[str, Any], actor: str, set_aliases: bool = True
    ) -> MlflowImportResult:
        """``actor`` is the token's user; the server sets aliases only for a caller who may
        move them (the approver role on the model)."""
        body = {**page, "set_aliases": set_aliases}
        data = self._t.call("POST", "/imports/mlflow/models", json_body=body)
        return MlflowImportResult(**data)


class RemoteDvcImport:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def import_stages(
        self, project: str, stages: Sequence[Mapping[str, Any]], actor: str
    ) -> DvcImportResult:
        """``actor`` is the token's user on the server."""
        body = {"project": project, "stages": list(stages)}
        data = self._t.call("POST", "/imports/dvc/stages", json_body=body)
        return DvcImportResult(**data)
