"""``ActiveRun``: the object ``clew.start_run(...)`` returns, shaped like MLflow's run."""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.client.metrics_buffer import BATCH_SIZE, Point
from clew.domain import records
from clew.domain.records import ArtifactRecord, RunRecord
from clew.domain.reproduction import INPUTS_TAG
from clew.domain.run_fields import check_key, check_metric_value, check_step, param_text
from clew.errors import ConflictError, RunFinishedError

if TYPE_CHECKING:
    from clew.client.client import Client

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def _is_uri(text: str) -> bool:
    return bool(_SCHEME.match(text)) and not text.startswith("file://")


class ActiveRun:
    def __init__(self, client: Client, record: RunRecord, root: str | None = None) -> None:
        self._client = client
        self._root = root
        self._input_paths: dict[str, str] = {}
        self.info = record
        self.id = record.id
        self._ended = False
        self._steps: dict[str, int] = {}
        self._queue = client._metrics.queue_for(record.id)
        self._params: dict[str, Any] = dict(record.params)

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id} {self.info.experiment}/{self.info.name} {self.status}>"

    @property
    def status(self) -> str:
        return self.info.status

    # --- context manager ------------------------------------------------------------------

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: Any, exc: Any, _tb: Any) -> None:
        if self._ended:
            return
        if exc_type is None:
            self.end(records.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(records.KILLED)
        else:
            self.end(records.FAILED)

    # --- params, tags, metrics ------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Queue params; they are written with the next metrics, a flush or the run's end.

        Checked here, at the call: a bad key or value, or a param this run already has with
        another value, raises now rather than at the write.
        """
        self._check_open()
        rows = {check_key(k, "param"): param_text(k, v) for k, v in params.items()}
        for key, value in rows.items():
            if self._params.get(key, value) != value:
                raise ConflictError(
                    f"param {key!r} of run {self.id} is already {self._params[key]!r} and "
                    f"cannot change to {value!r}; params are immutable, start a new run instead."
                )
        self._client._metrics.add_fields(self.id, params=rows)
        self._params.update(rows)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Queue tags (checked now), written like params."""
        self._check_open()
        rows = {check_key(k, "tag"): str(v) for k, v in tags.items()}
        self._client._metrics.add_fields(self.id, tags=rows)

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Queue one point; ``step`` defaults to 0, 1, 2... per key within this run.

        Everything is validated here, at the call, so a bad point never reaches the
        background writer where its error would surface late.
        """
        if self._ended:
            raise self._finished_error()
        if type(value) is not float:
            value = check_metric_value(key, value)
        if step is None:
            step = self._steps.get(key, -1) + 1
            if step == 0:
                check_key(key, "metric")
        else:
            if type(step) is not int:
                step = check_step(key, step)
            if key not in self._steps:
                check_key(key, "metric")
        if timestamp is None:
            timestamp = time.time_ns() // 1_000_000
        elif type(timestamp) is not int:
            timestamp = check_step(key, timestamp, "timestamp")
        self._steps[key] = step
        queue = self._queue
        queue.append((key, value, step, timestamp))
        if len(queue) == BATCH_SIZE:
            self._client._metrics.nudge()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value, step)

    def flush(self) -> None:
        """Write queued params, tags and metric points now (also written in the background)."""
        self._client._metrics.flush(self.id)

    # --- inputs, outputs, models ----------------------------------------------------------

    def log_input(
        self,
        obj: Any,
        name: str | None = None,
        type: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> ArtifactRecord:
        """Record something this run consumed (DataFrame, path, URI, data source, feature group)."""
        return self._log(obj, name, type, "input", properties)

    def log_output(
        self,
        obj: Any,
        name: str | None = None,
        type: str | None = None,
        properties: dict[str, Any] | None = None,
        derived_from: list[ArtifactRecord] | None = None,
    ) -> ArtifactRecord:
        """Record something this run produced."""
        return self._log(obj, name, type, "output", properties, derived_from)

    def log_artifact(self, path: str | Path, name: str | None = None) -> ArtifactRecord:
        return self.log_output(Path(path), name=name)

    def log_model(
        self,
        model: Any,
        name: str,
        flavor: str | None = None,
        properties: dict[str, Any] | None = None,
        input_example: Any = None,
    ) -> ArtifactRecord:
        """Save a model with its flavor (see docs/models.md) as an output.

        ``input_example`` (a few rows of inputs) types the version's signature from what the
        model returns for it; a ``torch.nn.Module`` needs one to be exported."""
        from clew.integrations import flavors

        self._check_open()
        chosen = flavors.choose(model, flavor)
        with tempfile.TemporaryDirectory(prefix="clew-model-") as temp:
            directory = Path(temp) / "model"
            directory.mkdir()
            description = flavors.save(model, directory, chosen, input_example)
            extra = {"flavor": description, **(properties or {})}
            return self._log(directory, name, "model", "output", extra)

    def _log(
        self,
        obj: Any,
        name: str | None,
        type_: str | None,
        direction: str,
        properties: dict[str, Any] | None,
        derived_from: list[ArtifactRecord] | None = None,
    ) -> ArtifactRecord:
        self._check_open()
        artifact = self._client._record(
            obj, name, type_, direction, properties, self.id, derived_from
        )
        if direction == "input" and isinstance(obj, str | Path) and not _is_uri(str(obj)):
            self._note_input_path(Path(str(obj).removeprefix("file://")), artifact.digest)
        return artifact

    def _note_input_path(self, path: Path, digest: str) -> None:
        """Remember where this run read a file from (relative to its repository when inside
        it), in the tag ``clew.inputs``, so ``clew reproduce`` restores it to the same place."""
        from clew.client.provenance import relative_path

        self._input_paths[relative_path(path.expanduser().resolve(), self._root)] = digest
        self.set_tags({INPUTS_TAG: json.dumps(self._input_paths, sort_keys=True)})

    # --- lifecycle ------------------------------------------------------------------------

    def end(self, status: str = records.FINISHED) -> None:
        """Write every queued param, tag and metric point and mark the run ended, in one
        transaction.

        If the points cannot be written the error is raised and the run stays open, so a
        retry of ``end()`` loses nothing.
        """
        if self._ended:
            return
        previous, self.info.status = self.info.status, status
        try:
            self._client._metrics.finish(
                self.id, lambda points, params, tags: self._write_end(status, points, params, tags)
            )
        except BaseException:
            self.info.status = previous
            raise
        self._ended = True
        self._client._pop_run(self)

    def _write_end(
        self, status: str, points: list[Point], params: dict[str, Any], tags: dict[str, Any]
    ) -> None:
        """End the run with what it logged last; a run already ended elsewhere keeps that status.

        Only when nothing is left to write: queued points, params or tags for a run that can
        no longer take them must surface as an error, never vanish.
        """
        runs = self._client._service.runs
        try:
            runs.end_run(self.id, status, self._client.actor, points, params=params, tags=tags)
        except RunFinishedError:
            if points or params or tags:
                raise
            self.info.status = runs.get_run(self.id).status

    def _check_open(self) -> None:
        if self._ended:
            raise self._finished_error()

    def _finished_error(self) -> RunFinishedError:
        return RunFinishedError(
            f"run {self.id} has already ended ({self.info.status}); start a new run to log more."
        )
