"""Model quality over a window: captured predictions joined to ground truth by prediction id.

A window (``clew.domain.monitoring.Window``) names one version and a time range or the last N
predictions. This module reads that version's capture files, keeps the window's rows, joins the
labels stored so far (``service/ground_truth.py``) and hands them to ``domain/quality.py``,
which computes the figures and compares them with the metrics recorded on the version's
training run. Labels arrive late: nothing is cached, so checking a window again after more
labels arrive gives the new figures and coverage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from clew.domain.monitoring import CheckReport, Window
from clew.domain.quality import LabelledWindow, QualitySpec, evaluate
from clew.domain.records import ms_to_iso
from clew.errors import InvalidInputError
from clew.service import ground_truth, registry
from clew.store import schema
from clew.store.location import Store

if TYPE_CHECKING:  # numpy and pyarrow: imported when a window is read, not when clew connects
    import numpy as np
    import pyarrow as pa


class ModelQualityService:
    """Model quality of one window of one version, from the labels stored so far."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def check_quality(self, window: Window, spec: QualitySpec | None = None) -> CheckReport:
        """The window's quality figures and its ``model_quality_check`` violations."""
        spec = spec or QualitySpec()
        with self.store.db.read() as connection:
            version = registry.get_version_row(connection, window.model, window.version)
        data = labelled_window(self.store, window, version.id, spec.segments)
        return evaluate(data, spec, version.metrics)


def quality_check(store: Store, spec: QualitySpec | None = None) -> Callable[[Window], CheckReport]:
    """The check as the monitor runner takes it: ``(window) -> CheckReport``."""
    service = ModelQualityService(store)

    def check(window: Window) -> CheckReport:
        return service.check_quality(window, spec)

    return check


def labelled_window(
    store: Store, window: Window, version_id: str, segments: Sequence[str] = ()
) -> LabelledWindow:
    """The window's predictions joined to their labels (none for a window with no rows:
    the caller decides whether an empty window is an error)."""
    import numpy as np
    import pyarrow as pa

    rows = window_rows(store, window, version_id, segments)
    if rows.num_rows == 0:
        return LabelledWindow(window, 0, [], [], None, np.zeros(0, dtype=bool))
    ids = rows.column("prediction_id").to_pylist()
    labels = ground_truth.labels_for(store, ids)
    keep = [row for row, pid in enumerate(ids) if pid in labels]
    taken = rows.take(pa.array(keep, pa.int64()))
    predicted, proba, has_proba = _predictions(taken)
    return LabelledWindow(
        window=window,
        rows=rows.num_rows,
        truth=[labels[ids[row]] for row in keep],
        predicted=predicted,
        proba=proba,
        has_proba=has_proba,
        segments={name: taken.column(name).to_pylist() for name in segments},
    )


def describe(window: Window) -> str:
    """The window in words, for messages."""
    ref = f"{window.model}/{window.version}"
    if window.last_n is not None and window.start_ms is None and window.end_ms is None:
        return f"{ref} (the last {window.last_n})"
    start = ms_to_iso(window.start_ms) if window.start_ms is not None else "the beginning"
    end = ms_to_iso(window.end_ms) if window.end_ms is not None else "now"
    last = f", the last {window.last_n}" if window.last_n is not None else ""
    return f"{ref} from {start} to {end}{last}"


def window_rows(
    store: Store, window: Window, version_id: str, segments: Sequence[str] = ()
) -> pa.Table:
    """The window's rows (id, time in ms, output, method, segment columns), oldest first."""
    import pyarrow as pa

    table = schema.capture_batches
    with store.db.read() as connection:
        paths = connection.execute(
            select(table.c.path)
            .where(table.c.model_version_id == version_id)
            .order_by(table.c.created_ms, table.c.id)
        ).scalars()
        parts = [_batch_rows(store, path, window, segments) for path in list(paths)]
    parts = [part for part in parts if part.num_rows]
    if not parts:
        return pa.table({"prediction_id": pa.array([], pa.string())})
    rows = pa.concat_tables(parts, promote_options="permissive")
    rows = rows.sort_by([("time", "ascending"), ("prediction_id", "ascending")])
    if window.last_n is not None and rows.num_rows > window.last_n:
        rows = rows.slice(rows.num_rows - window.last_n)
    return rows


def _batch_rows(store: Store, path: str, window: Window, segments: Sequence[str]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    from clew.domain.captures import header_of

    batch = store.capture_files.read_batch(path)
    method = header_of(batch).get("method", "predict")
    times = pc.cast(pc.cast(batch.column("time"), pa.timestamp("ms")), pa.int64())
    keep = pc.and_(
        pc.greater_equal(times, window.start_ms if window.start_ms is not None else -(2**62)),
        pc.less(times, window.end_ms if window.end_ms is not None else 2**62),
    )
    columns: dict[str, Any] = {
        "prediction_id": batch.column("prediction_id"),
        "time": times,
        "output": _output_text(batch.column("output")),
        "method": pa.array([method] * batch.num_rows, pa.string()),
    }
    for name in segments:
        columns[name] = _input_column(batch, name, path)
    return pa.table(columns).filter(keep)


def _output_text(column: pa.ChunkedArray) -> pa.Array:
    """Outputs as JSON text, one per row, so batches of any output type concatenate."""
    import pyarrow as pa

    return pa.array([json.dumps(value) for value in column.to_pylist()], pa.string())


def _input_column(batch: pa.Table, name: str, path: str) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    if "inputs" not in batch.column_names:
        raise InvalidInputError(
            f"segment column {name!r} needs captured inputs, but capture file {path} has none; "
            "capture inputs or drop the segment."
        )
    inputs = batch.column("inputs").combine_chunks()
    fields = [inputs.type.field(k).name for k in range(inputs.type.num_fields)]
    if name not in fields:
        raise InvalidInputError(
            f"segment column {name!r} is not among the captured inputs ({', '.join(fields)}); "
            "name one of those."
        )
    values = pc.struct_field(inputs, name)
    return pa.array([None if v is None else str(v) for v in values.to_pylist()], pa.string())


def _predictions(rows: pa.Table) -> tuple[list[Any], np.ndarray | None, np.ndarray]:
    """Each row's predicted value, and the probabilities of rows captured by predict_proba
    (whose predicted class ``domain/quality.py`` takes from the most probable column)."""
    import numpy as np

    outputs = [json.loads(text) for text in rows.column("output").to_pylist()]
    methods = rows.column("method").to_pylist() if rows.num_rows else []
    has_proba = np.array([method == "predict_proba" for method in methods], dtype=bool)
    if not has_proba.any():
        return outputs, None, has_proba
    width = {len(outputs[k]) for k in np.flatnonzero(has_proba)}
    if len(width) != 1:
        raise InvalidInputError(
            f"predict_proba outputs in this window have {sorted(width)} columns; "
            "check one model version's probabilities at a time."
        )
    proba = np.zeros((len(outputs), width.pop()), dtype=np.float64)
    for row in np.flatnonzero(has_proba):
        proba[row] = outputs[row]
    predicted = [None if has_proba[row] else value for row, value in enumerate(outputs)]
    return predicted, proba, has_proba
