"""Reading a window of captures as partitions: one capture file per task, on threads or Dask.

A window's statistics are the ordered merge of its files' statistics, and each file's are the
ordered merge of its row groups' (``clew/domain/statistics.py`` merges exactly). Every engine
folds in that same order, so the local engine and a Dask cluster return the same statistics to
the last bit, and so the same drift figures and violations.

- **Local**: the files are summarised on a small thread pool (pyarrow decodes and numpy bins
  with the GIL released, so two cores are both used), each task reading only the needed
  columns, one row group at a time; memory is a row group per thread.
- **Dask**: ``summarise_file`` runs on the cluster's workers, which open the capture files
  themselves (a local path they share, or the store's object-store URL with its fsspec options;
  credentials come from each worker's environment, never from clew). Only file names go out and
  only statistics (a few kilobytes per feature) come back, never the rows.

Nothing here knows the database: the caller lists the window's files (``Slice``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clew.domain.monitoring import Window
from clew.domain.statistics import (
    DatasetStats,
    FeatureStats,
    NumericStats,
    float_values,
    is_numeric,
)
from clew.domain.statistics import summarise_column as summarise_array
from clew.errors import InvalidInputError, NotFoundError
from clew.extras import require_extra
from clew.store.captures import check_relative
from clew.store.faults import capture_file_faults

INPUTS = "inputs"
OUTPUT = "output"
# A Dask scheduler's address every check uses when none is passed (``clew server`` reads it, so
# an operator, not a request, chooses the cluster the server's checks run on).
SCHEDULER_ENV = "CLEW_MONITOR_DASK_SCHEDULER"
THREADS = 2
CONNECT_SECONDS = 10


@dataclass
class WindowStats:
    """What a window held: its statistics per baseline feature, and its columns' kinds.

    ``columns`` maps every feature column the window's files carry to "numeric" or "text";
    ``type_mismatch`` lists baseline numeric features the window carried as text.
    """

    stats: DatasetStats
    columns: dict[str, str] = field(default_factory=dict)
    type_mismatch: set[str] = field(default_factory=set)

    def merge(self, other: WindowStats) -> WindowStats:
        return WindowStats(
            stats=self.stats.merge(other.stats),
            columns={**self.columns, **other.columns},
            type_mismatch=self.type_mismatch | other.type_mismatch,
        )


@dataclass(frozen=True)
class Slice:
    """One capture file of a window, and which of its rows the window takes."""

    path: str
    tail: int | None = None  # only the last ``tail`` rows (a last-N window's oldest file)


class ParquetOpener(Protocol):
    """Something that opens a capture file by its recorded path (the store's ``CaptureFiles``
    in this process, a ``CaptureSource`` on a Dask worker)."""

    def open_parquet(self, relative: str) -> pq.ParquetFile: ...


@dataclass(frozen=True)
class CaptureSource:
    """A store's capture files as another process opens them: ``root`` is a local directory
    or an object-store URL (``s3://bucket/prefix/captures``), ``options`` its fsspec options
    (endpoint, region, profile)."""

    root: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def open_parquet(self, relative: str) -> pq.ParquetFile:
        location = f"{self.root.rstrip('/')}/{check_relative(relative)}"
        filesystem, path = self._filesystem(location)
        try:
            with capture_file_faults(location):
                return pq.ParquetFile(path, filesystem=filesystem)
        except FileNotFoundError as error:
            raise NotFoundError(
                f"capture batch file {location} is missing where the Dask worker looked; give "
                "workers the store's capture directory (or bucket) at the same path."
            ) from error

    def _filesystem(self, location: str) -> tuple[Any, str]:
        if "://" not in location:
            return None, location
        import fsspec

        filesystem, path = fsspec.core.url_to_fs(location, **dict(self.options))
        return filesystem, str(path)


def summarise_file(
    opener: ParquetOpener,
    part: Slice,
    window: Window,
    reference: DatasetStats,
    prediction: str | None,
) -> WindowStats | None:
    """One capture file's share of the window: its row groups in the window, summarised one
    at a time over the baseline's edges and merged in file order (None when it holds none)."""
    total: WindowStats | None = None
    for seen in _row_group_summaries(opener, part, window, reference, prediction):
        total = seen if total is None else total.merge(seen)
    return total


def merge_in_order(parts: Iterable[WindowStats | None]) -> WindowStats | None:
    """The files' statistics folded oldest first: the one order every engine uses."""
    total: WindowStats | None = None
    for part in parts:
        if part is not None:
            total = part if total is None else total.merge(part)
    return total


# --- engines -------------------------------------------------------------------------------

Summarise = Callable[[Slice], WindowStats | None]


def summarise_local(parts: Sequence[Slice], summarise: Summarise) -> WindowStats | None:
    """Every file on a small thread pool, results merged in file order. ``map`` yields in
    order and keeps only a few files' statistics waiting, so memory stays bounded."""
    if len(parts) <= 1:
        return merge_in_order([summarise(part) for part in parts])
    with ThreadPoolExecutor(max_workers=min(THREADS, len(parts))) as pool:
        return merge_in_order(pool.map(summarise, parts))


def summarise_dask(
    scheduler: Any,
    source: CaptureSource,
    parts: Sequence[Slice],
    window: Window,
    reference: DatasetStats,
    prediction: str | None,
) -> WindowStats | None:
    """Every file summarised by a Dask worker (``summarise_file``), merged here in file order.

    ``scheduler`` is a ``distributed.Client`` (used as it is) or a scheduler's address (a
    client is opened for this check and closed after it)."""
    require_extra("dask", "a check on a Dask cluster")
    with _dask_client(scheduler) as client:
        shared = client.scatter(reference, broadcast=True, hash=False)
        futures = client.map(
            summarise_file,
            [source] * len(parts),
            list(parts),
            [window] * len(parts),
            [shared] * len(parts),
            [prediction] * len(parts),
            pure=False,
        )
        return merge_in_order(_results_in_order(futures))


def _results_in_order(futures: list[Any]) -> Iterator[WindowStats | None]:
    """Each file's statistics in file order, each released from the cluster once taken."""
    for future in futures:
        result: WindowStats | None = future.result()
        future.release()
        yield result


def scheduler_from_environment() -> str | None:
    """The operator's Dask scheduler (``CLEW_MONITOR_DASK_SCHEDULER``), if one is set."""
    return os.environ.get(SCHEDULER_ENV) or None


@contextlib.contextmanager
def _dask_client(scheduler: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for one check: the caller's own, or one opened on an address
    and closed afterwards; an unreachable scheduler is one sentence."""
    if not isinstance(scheduler, str):
        yield scheduler
        return
    import distributed

    connect: Any = distributed.Client  # untyped: the cluster's own API
    try:
        client = connect(scheduler, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise InvalidInputError(
            f"no Dask scheduler answered at {scheduler} ({_first_line(error)}); start one "
            "(dask scheduler) or fix the address, e.g. tcp://10.0.0.5:8786."
        ) from error
    try:
        yield client
    finally:
        client.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def capture_times(opener: ParquetOpener, part: Slice, window: Window) -> np.ndarray:
    """The capture times (ms) of one file's rows inside the window's time bounds."""
    parquet = opener.open_parquet(part.path)
    groups = [index for index, _ in _row_groups(parquet, window, None)]
    if not groups:
        return np.zeros(0, dtype=np.int64)
    table = _in_window(parquet.read_row_groups(groups, columns=["time"]), window)
    times = pc.cast(pc.cast(table.column("time"), pa.timestamp("ms")), pa.int64())
    return float_values(times).astype(np.int64)


# --- one file ------------------------------------------------------------------------------


def _row_group_summaries(
    opener: ParquetOpener,
    part: Slice,
    window: Window,
    reference: DatasetStats,
    prediction: str | None,
) -> Iterator[WindowStats]:
    parquet = opener.open_parquet(part.path)
    columns = _feature_columns(parquet.schema_arrow, prediction)
    wanted = [name for name in columns if name in reference.features]
    paths = [_column_path(name, prediction) for name in wanted]
    kinds = {name: _kind(kind) for name, kind in columns.items()}
    for index, skip in _row_groups(parquet, window, part.tail):
        table = parquet.read_row_group(index, columns=[*paths, "time"], use_threads=False)
        table = _in_window(table.slice(skip) if skip else table, window)
        yield _summarise(table, wanted, prediction, reference, kinds)


def _summarise(
    table: pa.Table,
    wanted: list[str],
    prediction: str | None,
    reference: DatasetStats,
    kinds: dict[str, str],
) -> WindowStats:
    features: dict[str, FeatureStats] = {}
    mismatch: set[str] = set()
    inputs = table.column(INPUTS) if INPUTS in table.column_names else None
    for name in wanted:
        if name == prediction:
            column = table.column(OUTPUT)
        else:
            assert inputs is not None
            column = pc.struct_field(inputs, name)
        base = reference.features[name]
        if isinstance(base, NumericStats) and not is_numeric(column):
            mismatch.add(name)
            continue
        features[name] = summarise_array(column, base)
    return WindowStats(DatasetStats(table.num_rows, features), dict(kinds), mismatch)


def _feature_columns(schema_: pa.Schema, prediction: str | None) -> dict[str, pa.DataType]:
    """The window's feature columns: the inputs' fields, and the output as the prediction."""
    columns: dict[str, pa.DataType] = {}
    index = schema_.get_field_index(INPUTS)
    if index >= 0 and pa.types.is_struct(schema_.field(index).type):
        struct = schema_.field(index).type
        for position in range(struct.num_fields):
            child = struct.field(position)
            columns[child.name] = child.type
    if prediction is not None and schema_.get_field_index(OUTPUT) >= 0:
        columns[prediction] = schema_.field(OUTPUT).type
    return columns


def _column_path(name: str, prediction: str | None) -> str:
    return OUTPUT if name == prediction else f"{INPUTS}.{name}"


def _kind(kind: pa.DataType) -> str:
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    return "numeric" if numeric else "text"


def _row_groups(parquet: pq.ParquetFile, window: Window, tail: int | None) -> list[tuple[int, int]]:
    """(row group, rows to skip at its start) for the groups the window may need: groups whose
    time range misses the window are pruned by their statistics; a tail keeps the last rows."""
    metadata = parquet.metadata
    time_index = parquet.schema_arrow.get_field_index("time")
    chosen: list[tuple[int, int]] = []
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    start_row = sum(sizes) - tail if tail is not None else 0
    offset = 0
    for index, size in enumerate(sizes):
        first, offset = offset, offset + size
        if offset <= start_row or not _overlaps(metadata.row_group(index), time_index, window):
            continue
        chosen.append((index, max(0, start_row - first)))
    return chosen


def _overlaps(group: Any, time_index: int, window: Window) -> bool:
    if window.start_ms is None and window.end_ms is None:
        return True
    stats = group.column(time_index).statistics
    if stats is None or not stats.has_min_max:
        return True
    low = _as_ms(stats.min)
    high = _as_ms(stats.max)
    if window.start_ms is not None and high < window.start_ms:
        return False
    return not (window.end_ms is not None and low >= window.end_ms)


def _as_ms(value: Any) -> int:
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return int(value)


def _in_window(table: pa.Table, window: Window) -> pa.Table:
    if window.start_ms is None and window.end_ms is None:
        return table
    times = pc.cast(table.column("time"), pa.int64())
    checks: list[Any] = []
    if window.start_ms is not None:
        checks.append(pc.greater_equal(times, window.start_ms))
    if window.end_ms is not None:
        checks.append(pc.less(times, window.end_ms))
    keep = checks[0] if len(checks) == 1 else pc.and_(checks[0], checks[1])
    return table if pc.all(keep).as_py() else table.filter(keep)
