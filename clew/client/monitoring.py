"""``client.monitoring``: baselines and drift and data quality checks, the way ML users ask.

``create_baseline("churn/3", train_df)`` stores the DataFrame as a dataset artifact and builds
the version's baseline from it (or, with no data, from the training data lineage recorded);
``check_drift("churn@production", last_n=10_000)`` compares the newest captured predictions
with it. The rules run in the service, embedded or on the server alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.domain.monitoring import CheckReport, Window
from clew.errors import InvalidInputError

if TYPE_CHECKING:
    from clew.client.client import Client
    from clew.domain.baselines import Baseline  # numpy: only once a baseline is read
    from clew.service.protocols import Monitoring as MonitoringProtocol

Moment = datetime | int | None


class Monitoring:
    """Baselines and checks of model versions, over either backend."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def _service(self) -> MonitoringProtocol:
        """Looked up on each call: the container builds the service on first use."""
        return self._client._service.monitoring

    def create_baseline(
        self,
        model: str,
        data: Any = None,
        *,
        prediction: str | None = None,
        name: str | None = None,
    ) -> Baseline:
        """The baseline of ``model`` (``churn/3`` or ``churn@production``) from ``data``: a
        DataFrame (stored as a dataset artifact first), a dataset ref, or None for the
        training data lineage recorded. ``prediction`` names the column holding the model's
        output, so the captured predictions are checked for drift too."""
        dataset = (
            data if isinstance(data, str) or data is None else self._store_frame(model, data, name)
        )
        return self._service.create_baseline(
            model, self._client.actor, dataset=dataset, prediction=prediction
        )

    def import_baseline(
        self, model: str, statistics: str | Path, constraints: str | Path | None = None
    ) -> Baseline:
        """Adopt SageMaker Model Monitor ``statistics.json`` (and ``constraints.json``) files."""
        return self._service.import_baseline(
            model,
            _text(statistics),
            None if constraints is None else _text(constraints),
            self._client.actor,
        )

    def baseline(self, model: str) -> Baseline:
        """The version's baseline, with its latest constraints."""
        return self._service.get_baseline(model)

    def find_baseline(self, model: str) -> Baseline | None:
        return self._service.find_baseline(model)

    def export_baseline(self, model: str, directory: str | Path) -> tuple[Path, Path]:
        """Write ``statistics.json`` and ``constraints.json`` into ``directory``."""
        baseline = self.baseline(model)
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for file_name, document in (
            ("statistics.json", baseline.statistics),
            ("constraints.json", baseline.constraints),
        ):
            path = target / file_name
            path.write_text(json.dumps(document, indent=2, sort_keys=True))
            written.append(path)
        return written[0], written[1]

    def edit_constraints(
        self, model: str, edits: Mapping[str, Mapping[str, Any]], reason: str = ""
    ) -> Baseline:
        """Change per-feature constraints, e.g. ``{"age": {"drift_threshold": 0.3}}``: a new,
        audited revision that every later check uses."""
        return self._service.edit_constraints(model, edits, self._client.actor, reason)

    def import_constraints(self, model: str, constraints: str | Path) -> Baseline:
        """Replace the constraints with a whole ``constraints.json`` (a new, audited revision)."""
        return self._service.import_constraints(model, _text(constraints), self._client.actor)

    def check_drift(
        self,
        model: str,
        *,
        last_n: int | None = None,
        start: Moment = None,
        end: Moment = None,
        scheduler: Any = None,
    ) -> CheckReport:
        """Drift of every feature (and the prediction) in a window of captured predictions.
        ``scheduler`` (a Dask scheduler's address or a ``distributed.Client``) has that
        cluster's workers read the window's capture files."""
        window = self.window(model, last_n=last_n, start=start, end=end)
        return self._service.check_drift(window, scheduler)

    def check_data_quality(
        self,
        model: str,
        *,
        last_n: int | None = None,
        start: Moment = None,
        end: Moment = None,
        scheduler: Any = None,
    ) -> CheckReport:
        """Completeness, types, columns, categorical values and bounds over a window."""
        window = self.window(model, last_n=last_n, start=start, end=end)
        return self._service.check_data_quality(window, scheduler)

    def check(
        self,
        model: str,
        *,
        last_n: int | None = None,
        start: Moment = None,
        end: Moment = None,
        scheduler: Any = None,
    ) -> list[CheckReport]:
        """Data quality and drift together, from one read of the window."""
        window = self.window(model, last_n=last_n, start=start, end=end)
        return self._service.check_all(window, scheduler)

    def window(
        self, model: str, *, last_n: int | None = None, start: Moment = None, end: Moment = None
    ) -> Window:
        """The ``Window`` of ``model``'s version these bounds describe."""
        version = self._client._service.registry.resolve(model)
        return Window(version.name, version.version, _ms(start), _ms(end), last_n)

    def _store_frame(self, model: str, frame: Any, name: str | None) -> str:
        if type(frame).__name__ != "DataFrame":
            raise InvalidInputError(
                f"baseline data must be a DataFrame or a dataset ref, not {type(frame).__name__}."
            )
        label = name or f"{model.replace('@', '-').replace('/', '-v')}-baseline"
        record = self._client._record(frame, label, "dataset", "input", None, None)
        return f"artifact:{record.id}"


def _text(source: str | Path) -> str:
    """A document given as a path (when one exists there) or as its JSON text."""
    if isinstance(source, Path) or (
        not source.lstrip().startswith(("{", "[")) and Path(source).is_file()
    ):
        return Path(source).read_text()
    return source


def _ms(moment: Moment) -> int | None:
    if moment is None or isinstance(moment, int):
        return moment
    if moment.tzinfo is None:  # a time without a zone is read as UTC, like captures' times
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
