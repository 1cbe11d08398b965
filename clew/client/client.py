"""``Client``: one connection to a clew store, with the whole SDK as methods.

The module-level functions in ``clew`` (``clew.start_run``, ``clew.search_runs``...) call
the default client, which ``clew.connect()`` replaces.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.client import inputs, provenance
from clew.client.audit import AuditMixin
from clew.client.batch import BatchMixin
from clew.client.cards import CardsMixin
from clew.client.deployments import DeploymentsMixin
from clew.client.embedded import EmbeddedBackend
from clew.client.explain import ExplainMixin
from clew.client.exports import ExportsMixin
from clew.client.findings import FindingsMixin
from clew.client.governance import GovernanceMixin
from clew.client.imports import Imports
from clew.client.metrics_buffer import MetricBuffer, Point
from clew.client.monitor_runs import MonitorMixin
from clew.client.monitoring import Monitoring
from clew.client.openlineage import OpenLineage
from clew.client.predictions import PredictionsMixin
from clew.client.run import ActiveRun
from clew.client.webhooks import WebhooksMixin
from clew.domain import digests, records
from clew.domain.blobs import Progress
from clew.domain.lineage import IngestResult, LineageResult
from clew.domain.prov import to_prov_json
from clew.domain.records import ArtifactRecord, RunPage, RunRecord
from clew.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

    from clew.domain.reproduction import ReproductionReport
    from clew.service.protocols import Backend
    from clew.service.protocols import Lineage as LineageProtocol

_clients: weakref.WeakSet[Client] = weakref.WeakSet()


@dataclass(frozen=True)
class RunsPage:
    """One page of a run search: the runs as a DataFrame and the token for the next page."""

    runs: pd.DataFrame
    next_page_token: str | None


class Lineage:
    """``client.lineage``: graph queries by ref, returning pandas-convertible results."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def _service(self) -> LineageProtocol:
        """Looked up on each call: the container builds the service on first use."""
        return self._client._service.lineage

    def ingest(
        self,
        artifacts: Sequence[Mapping[str, Any]] = (),
        runs: Sequence[Mapping[str, Any]] = (),
    ) -> IngestResult:
        """Record many artifacts and runs (with their inputs and outputs) in one transaction.

        Items are plain dicts (see docs/lineage.md, "Many runs at once"); runs refer to
        artifacts by the ``key`` each artifact was given, and the result maps every key to its
        node id. Nothing is written unless every item is valid.
        """
        return self._service.ingest(list(artifacts), list(runs), self._client.actor)

    def upstream(
        self, ref: str, max_depth: int = 10, types: Sequence[str] | None = None
    ) -> LineageResult:
        return self._service.upstream(ref, max_depth, types)

    def downstream(
        self, ref: str, max_depth: int = 10, types: Sequence[str] | None = None
    ) -> LineageResult:
        return self._service.downstream(ref, max_depth, types)

    def prov(self, ref: str, max_depth: int = 10, direction: str = "upstream") -> dict[str, Any]:
        """The thread of ``ref`` (upstream: what made it; downstream: what it made) as a W3C
        PROV-JSON document, for tools that speak the standard."""
        if direction not in ("upstream", "downstream"):
            raise InvalidInputError("direction is 'upstream' or 'downstream'.")
        walk = self.upstream if direction == "upstream" else self.downstream
        return to_prov_json(walk(ref, max_depth))

    def feature_groups_from_data_source(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self._service.feature_groups_from_data_source(ref, max_depth)

    def data_sources_from_feature_group(self, ref: str, max_depth: int = 3) -> pd.DataFrame:
        return self._service.data_sources_from_feature_group(ref, max_depth)

    def models_from_feature_group(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self._service.models_from_feature_group(ref, max_depth)

    def feature_groups_from_model(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self._service.feature_groups_from_model(ref, max_depth)


class Client(
    GovernanceMixin,
    PredictionsMixin,
    AuditMixin,
    WebhooksMixin,
    MonitorMixin,
    BatchMixin,
    DeploymentsMixin,
    ExplainMixin,
    FindingsMixin,
    CardsMixin,
    ExportsMixin,
):
    def __init__(
        self,
        uri: str | None = None,
        artifacts: str | None = None,
        token: str | None = None,
        signing_token: str | None = None,
        create: bool = False,
    ) -> None:
        self._service = _backend(uri, artifacts, token, signing_token, create)
        self.store = self._service.store
        self.lineage = Lineage(self)
        self.monitoring = Monitoring(self)
        self.openlineage = OpenLineage(self)
        self.imports = Imports(self)
        self._metrics = MetricBuffer(self._write_metrics, self._write_fields)
        self._local = threading.local()
        self._captured: dict[str, Any] = {}
        self._pending_seed: int | None = None
        _clients.add(self)

    @property
    def actor(self) -> str:
        """On a server the token's user (the server ignores claimed names); else the OS user."""
        return self._service.actor

    @property
    def uri(self) -> str:
        return self.store.uri

    # --- runs ----------------------------------------------------------------------------

    def start_run(
        self,
        experiment: str = "default",
        name: str | None = None,
        kind: str = "training",
        *,
        nested: bool = False,
        parent: ActiveRun | str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        capture_code: bool = True,
    ) -> ActiveRun:
        """Start a run; use it as a context manager so it ends (FAILED on exception)."""
        stack = self._stack()
        parent_id = parent.id if isinstance(parent, ActiveRun) else parent
        if nested and parent_id is None:
            if not stack:
                raise InvalidInputError("nested=True needs an active parent run; start one first.")
            parent_id = stack[-1].id
        code_id, env_id = self._capture_ids() if capture_code else (None, None)
        code = provenance.code() if code_id else None
        record = self._service.runs.create_run(
            experiment=experiment,
            name=name or kind,
            kind=kind,
            actor=self.actor,
            parent_id=parent_id,
            command=provenance.command_line(),
            seed=self._pending_seed,
            params=params,
            tags=tags,
            code_artifact_id=code_id,
            environment_artifact_id=env_id,
            properties={"invocation": provenance.invocation(code.root if code else None)},
        )
        run = ActiveRun(self, record, code.root if code else None)
        stack.append(run)
        return run

    def active_run(self) -> ActiveRun | None:
        stack = self._stack()
        return stack[-1] if stack else None

    def get_run(self, run_id: str) -> RunRecord:
        self._flush_if_active(run_id)
        return self._service.runs.get_run(run_id)

    def metric_history(self, run_id: str, key: str) -> pd.DataFrame:
        self._flush_if_active(run_id)
        points = self._service.runs.metric_history(run_id, key)
        import pandas as pd  # on first use: connecting and logging never need it

        return pd.DataFrame(
            [(p.step, p.value, records.ms_to_datetime(p.timestamp_ms)) for p in points],
            columns=["step", "value", "timestamp"],
        )

    def search_runs(
        self,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Runs matching ``filter`` as a DataFrame with params.*, metrics.* and tags.* columns."""
        return runs_to_frame(
            self.search_run_records(filter, order_by, max_results, experiments).runs
        )

    def search_run_records(
        self,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """The page :meth:`search_runs_page` returns, with the runs as ``RunRecord``s rather
        than a DataFrame: for callers that need no pandas (the CLI lists runs without it)."""
        for run in self._stack():
            run.flush()
        return self._service.search_run_page(filter, order_by, max_results, experiments, page_token)

    def search_runs_page(
        self,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> RunsPage:
        """One page of :meth:`search_runs`; pass ``page.next_page_token`` back for the next
        page (None on the last). Pages follow the same order and never repeat or skip a run,
        even while new runs are logged; a token only works with the search that made it."""
        page = self.search_run_records(filter, order_by, max_results, experiments, page_token)
        return RunsPage(runs_to_frame(page.runs), page.next_page_token)

    def export_artifact(self, ref: str, destination: str | Path) -> Path:
        """Copy an artifact out of the store (a file, or a directory for directories/models).

        Every byte is checked against its digest first; a damaged blob raises IntegrityError
        naming the digest and leaves nothing at ``destination``.
        """
        artifact = self._service.artifacts.resolve(ref)
        self._service.record_read(artifact.digest, self.actor)
        return self._service.artifacts.export(artifact, Path(destination))

    def reproduce(self, ref: str, **options: Any) -> ReproductionReport:
        """Re-run version ``ref`` from its recorded commit, inputs and command and store a
        signed verdict (see ``clew.client.reproduce.run_reproduction`` for the options)."""
        from clew.client.reproduce import run_reproduction

        return run_reproduction(self, ref, **options)

    def seed(self, value: int) -> int:
        """Seed random, numpy and (if installed) torch; record the seed on the active run."""
        import random

        import numpy

        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInputError(f"seed {value!r} must be a non-negative integer.")
        random.seed(value)
        numpy.random.seed(value % 2**32)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.manual_seed(value)
        self._pending_seed = value
        active = self.active_run()
        if active is not None:
            active.log_param("seed", value)
        return value

    # --- internals shared with ActiveRun -------------------------------------------------

    def _record(
        self,
        obj: Any,
        name: str | None,
        type_: str | None,
        direction: str,
        properties: dict[str, Any] | None,
        run_id: str | None,
        derived_from: list[ArtifactRecord] | None = None,
        progress: Progress | None = None,
    ) -> ArtifactRecord:
        prepared = inputs.prepare(
            obj,
            self.store.blobs,
            name=name,
            type_=type_,
            direction=direction,
            progress=progress,
            properties=properties,
        )
        return self._service.artifacts.log(
            run_id=run_id,
            direction=direction,
            type_=prepared.type,
            name=prepared.name,
            digest=prepared.digest,
            actor=self.actor,
            size=prepared.size,
            uri=prepared.uri,
            properties=prepared.properties,
            blobs=prepared.blobs,
            derived_from=[a.id for a in derived_from or []],
        )

    def _capture_ids(self) -> tuple[str | None, str | None]:
        """Record this process's code and environment artifacts once; reuse their ids."""
        if self._captured.get("generation") != provenance.generation():
            self._captured = {"generation": provenance.generation()}
        if "environment" not in self._captured:
            facts = provenance.environment()
            blob = self.store.blobs.put_bytes(digests.canonical_json(facts))
            environment = self._service.artifacts.log(
                run_id=None,
                direction="output",
                type_="environment",
                name=f"python-{facts['python']}",
                digest=blob.digest,
                actor=self.actor,
                size=blob.size,
                properties=facts,
                blobs={blob.digest: (blob.size, "file")},
            )
            self._captured["environment"] = environment.id
        if "code" not in self._captured:
            self._captured["code"] = self._record_code()
        return self._captured["code"], self._captured["environment"]

    def _record_code(self) -> str | None:
        code = provenance.code()
        if code is None:
            return None
        needed: dict[str, tuple[int, str]] = {}
        if code.diff:
            blob = self.store.blobs.put_bytes(code.diff)
            needed[blob.digest] = (blob.size, "file")
        artifact = self._service.artifacts.log(
            run_id=None,
            direction="output",
            type_="code",
            name=inputs.safe_name(code.name),
            digest=code.digest,
            actor=self.actor,
            properties=code.properties,
            blobs=needed,
        )
        return artifact.id

    def _write_metrics(self, run_id: str, points: list[Point], key: str) -> None:
        self._service.runs.log_metrics(run_id, points, self.actor, batch_key=key)

    def _write_fields(self, run_id: str, params: dict[str, Any], tags: dict[str, Any]) -> None:
        """Queued params and tags, written at a flush point (both writes are idempotent)."""
        if params:
            self._service.runs.log_params(run_id, params, self.actor)
        if tags:
            self._service.runs.set_tags(run_id, tags, self.actor)

    def _stack(self) -> list[ActiveRun]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        stack: list[ActiveRun] = self._local.stack
        return stack

    def _pop_run(self, run: ActiveRun) -> None:
        stack = self._stack()
        if run in stack:
            stack.remove(run)

    def _flush_if_active(self, run_id: str) -> None:
        for run in self._stack():
            if run.id == run_id:
                run.flush()

    def _end_all(self, status: str) -> None:
        for run in reversed(list(self._stack())):
            run.end(status)
        self._metrics.close()

    def close(self) -> None:
        self._end_all(records.FINISHED)
        self._close_captures()
        self._service.close()


def _backend(
    uri: str | None,
    artifacts: str | None,
    token: str | None,
    signing_token: str | None,
    create: bool = False,
) -> Backend:
    """A clew server for ``http(s)://`` addresses (argument or ``CLEW_URI``), else a local store
    (``create``: start an empty one even beside a lost database's blobs; a server's store is
    its admin's to create). Both are returned as a ``Backend``, so mypy checks each, service
    by service, against ``service/protocols.py``."""
    address = uri if uri is not None else os.environ.get("CLEW_URI", "")
    if str(address).startswith(("http://", "https://")):
        from clew.client.remote_backend import RemoteBackend  # httpx only for a remote store

        return RemoteBackend(str(address), token, signing_token)
    return EmbeddedBackend(uri, artifacts, create)


def runs_to_frame(found: Sequence[RunRecord]) -> pd.DataFrame:
    rows = []
    for run in found:
        row = run.listed_fields(records.ms_to_datetime)
        row.update({f"params.{k}": v for k, v in run.params.items()})
        row.update({f"metrics.{k}": v for k, v in run.metrics.items()})
        row.update({f"tags.{k}": v for k, v in run.tags.items()})
        rows.append(row)
    base = [
        "run_id",
        "experiment",
        "name",
        "kind",
        "status",
        "user",
        "start_time",
        "end_time",
        "parent_id",
    ]
    import pandas as pd  # on first use: connecting and logging never need it

    return pd.DataFrame(rows, columns=base if not rows else None)


_exit_status = records.FINISHED
_original_excepthook = sys.excepthook


def _note_failure(exc_type: Any, exc: Any, tb: Any) -> None:
    """Remember how the script died, so runs it left open end FAILED (or KILLED on Ctrl-C)."""
    global _exit_status
    _exit_status = records.KILLED if issubclass(exc_type, KeyboardInterrupt) else records.FAILED
    _original_excepthook(exc_type, exc, tb)


sys.excepthook = _note_failure


@atexit.register
def _finish_open_runs() -> None:
    """At interpreter exit, write queued metrics and end runs left open (FAILED after a crash)."""
    status = _exit_status
    for client in list(_clients):
        try:
            client._end_all(status)
        except Exception as error:  # the interpreter is exiting: report, do not raise
            print(f"clew: could not finish open runs: {error}", file=sys.stderr)
