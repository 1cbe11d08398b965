"""DVC pipeline stages recorded as clew runs, artifacts and edges, in one transaction.

The SDK reads the project (``integrations/dvc_project``) and hands this module its stages as
``dvc.lock`` records them. A stage's run is named by the digest of its lock entry (command,
params, deps' and outs' md5): its clew run id is derived from that digest, so importing again
after ``dvc repro`` finds the stages that did not change by primary key and adds only the
ones that did. Files are described, not copied: their digest is the sha256 the reader
computed from the DVC cache, or, for a file whose bytes were not there, a digest of its path
and md5 (``by_reference`` in its properties).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from clew.domain import digests, ids, records
from clew.domain.imports import DvcImportResult
from clew.domain.openlineage import safe_name, ulid_from_int
from clew.domain.run_fields import check_key, param_text
from clew.errors import InvalidInputError
from clew.service import audit, bulk_rows
from clew.service.artifacts import check_artifact
from clew.service.contexts import ensure_context
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.id_sets import IdSetStatement
from clew.store.location import Store

KEY = "dvc"
MAX_STAGES = 1_000
_RUNS = IdSetStatement("SELECT id FROM runs WHERE id IN ({ids})")


_INSERT_PARAM = bulk_rows.insert("params", ("run_id", "key", "value"))


def stage_run_id(project: str, stage: str, lock_digest: str) -> str:
    """The clew run id of one stage as one ``dvc.lock`` entry records it."""
    text = f"dvc\n{project}\n{stage}\n{lock_digest}".encode()
    return ulid_from_int(int(hashlib.sha256(text).hexdigest()[:32], 16))


class DvcImportService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def import_stages(
        self, project: str, stages: Sequence[Mapping[str, Any]], actor: str
    ) -> DvcImportResult:
        """Record the stages not imported before, in one transaction; nothing is written
        unless every stage is valid."""
        if len(stages) > MAX_STAGES:
            raise InvalidInputError(f"a DVC import takes at most {MAX_STAGES} stages at once.")
        experiment = safe_name(str(project), "dvc")
        items = [_stage(index, raw, experiment) for index, raw in enumerate(stages)]
        result = DvcImportResult(runs={item["stage"]: item["run_id"] for item in items})
        with self.store.db.write() as connection:
            existing = {row[0] for row in _RUNS.all(connection, list(result.runs.values()))}
            new = [item for item in items if item["run_id"] not in existing]
            result.already = len(items) - len(new)
            result.imported = len(new)
            if new:
                writer = _Writer(connection, actor, experiment)
                for item in new:
                    writer.stage(item, result)
                audit.append_staged(
                    connection,
                    actor,
                    "dvc.import",
                    f"experiment:{experiment}",
                    {"stages": [item["stage"] for item in new]},
                )
        return result


class _Writer:
    def __init__(self, connection: Connection, actor: str, experiment: str) -> None:
        self.connection = connection
        self.actor = actor
        self.created_ms = now_ms()
        self.experiment_id = ensure_context(connection, "experiment", experiment, actor)

    def stage(self, item: Mapping[str, Any], result: DvcImportResult) -> None:
        run_id = item["run_id"]
        row: dict[str, Any] = dict.fromkeys(bulk_rows.RUN_COLUMNS)
        kept = {k: item[k] for k in ("stage", "lock_digest", "commit", "cmd")}
        row.update(
            id=run_id,
            experiment_id=self.experiment_id,
            name=item["stage"],
            kind="processing",
            status=records.FINISHED,
            user_name=self.actor,
            start_ms=self.created_ms,
            end_ms=self.created_ms,
            command=None if item["cmd"] is None else str(item["cmd"]),
            properties=json.dumps({KEY: kept}, sort_keys=True),
        )
        bulk_rows.INSERT_RUN.execute(self.connection, row)
        audit.stage(self.connection, schema.runs, row)
        params = [{"run_id": run_id, "key": k, "value": v} for k, v in item["params"].items()]
        if params:
            _INSERT_PARAM.execute_many(self.connection, params)
            audit.stage_many(self.connection, schema.params, params)
        self._edge(run_id, "run", self.experiment_id, "context", records.ASSOCIATED_WITH)
        for file in item["deps"]:
            self._edge(
                self._artifact(file, result), "artifact", run_id, "run", records.CONTRIBUTED_TO
            )
        for file in item["outs"]:
            self._edge(run_id, "run", self._artifact(file, result), "artifact", records.PRODUCED)

    def _artifact(self, file: Mapping[str, Any], result: DvcImportResult) -> str:
        identity = {"type": file["type"], "name": file["name"], "digest": file["digest"]}
        found = bulk_rows.FIND_ARTIFACT.first(self.connection, identity)
        if found:
            return str(found[0])
        row = {
            "id": ids.new_id(),
            **identity,
            "size": file["size"],
            "uri": None,
            "properties": json.dumps({KEY: file["properties"]}, sort_keys=True),
            "created_ms": self.created_ms,
            "created_by": self.actor,
        }
        bulk_rows.INSERT_ARTIFACT.execute(self.connection, row)
        audit.stage(self.connection, schema.artifacts, row)
        result.artifacts += 1
        return str(row["id"])

    def _edge(
        self, source: str, source_kind: str, target: str, kind: str, association: str
    ) -> None:
        row = dict(
            zip(
                bulk_rows.EDGE_COLUMNS,
                (source, source_kind, target, kind, association, self.created_ms),
                strict=True,
            )
        )
        if bulk_rows.INSERT_EDGE_ONCE.execute(self.connection, row).rowcount == 1:
            audit.stage(self.connection, schema.edges, row)


def _stage(index: int, raw: Mapping[str, Any], project: str) -> dict[str, Any]:
    what = f"DVC stage #{index}"
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{what} must be a JSON object.")
    stage, lock_digest = raw.get("stage"), raw.get("lock_digest")
    if not isinstance(stage, str) or not stage or len(stage) > 200:
        raise InvalidInputError(f"{what}: stage must be the stage's name.")
    if not isinstance(lock_digest, str) or len(lock_digest) != 64:
        raise InvalidInputError(f"{what}: lock_digest must be the lock entry's sha256 (hex).")
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        raise InvalidInputError(f"{what}: params must be a JSON object.")
    return {
        "stage": stage,
        "run_id": stage_run_id(project, stage, lock_digest),
        "lock_digest": lock_digest,
        "commit": raw.get("commit"),
        "cmd": raw.get("cmd"),
        "params": {check_key(k, "param"): param_text(k, v) for k, v in params.items()},
        "deps": [_file(item, what) for item in raw.get("deps") or []],
        "outs": [_file(item, what) for item in raw.get("outs") or []],
    }


def _file(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("path"), str):
        raise InvalidInputError(f"{what}: each dep and out is {{path, md5, size, sha256}}.")
    path, md5, sha256 = raw["path"], str(raw.get("md5") or ""), raw.get("sha256")
    size = raw.get("size")
    if size is not None and (type(size) is not int or size < 0):
        raise InvalidInputError(f"{what}: size of {path} must be a non-negative integer.")
    by_reference = sha256 is None
    digest = digests.digest_json({"dvc_md5": md5, "path": path}) if by_reference else sha256
    type_ = "directory" if md5.endswith(".dir") else "file"
    name = safe_name(path, "file")
    check_artifact(type_, name, str(digest))
    properties = {"path": path, "md5": md5, "by_reference": by_reference}
    return {"type": type_, "name": name, "digest": digest, "size": size, "properties": properties}
