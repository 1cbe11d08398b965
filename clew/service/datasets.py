"""Dataset descriptions: schema, row count and simple per-column statistics.

Computed from an Arrow table (what pandas DataFrames and Parquet files become), so the same
numbers are recorded whichever way a dataset arrives; ``RunningProfile`` computes them chunk by
chunk for a job that streams a file anyway (batch scoring), so nothing is read twice.

Id columns (``prediction_id``, ``request_id``) are unique by construction: their distinct count
says nothing and counting a million of them cost more than scoring them, so they get their null
count only.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: connecting and logging params never need pyarrow
    import pyarrow as pa

PROFILE_LIMIT_BYTES = 256 * 1024 * 1024
ID_COLUMNS = frozenset({"prediction_id", "request_id"})
DISTINCT_LIMIT = 1_000_000  # values a running profile keeps per column to count them


def dataframe_to_table(frame: Any) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def table_to_parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def profile(table: pa.Table) -> dict[str, Any]:
    return {
        "schema": {field.name: str(field.type) for field in table.schema},
        "row_count": table.num_rows,
        "statistics": {
            name: _column_stats(name, table.column(name)) for name in table.column_names
        },
    }


def _column_stats(name: str, column: pa.ChunkedArray | pa.Array) -> dict[str, Any]:
    import pyarrow.compute as pc

    stats: dict[str, Any] = {"nulls": column.null_count}
    if name in ID_COLUMNS:
        return stats
    if _numeric(column.type):
        if len(column) - column.null_count > 0:
            minmax = pc.min_max(column)
            stats.update(
                min=_number(minmax["min"].as_py()),
                max=_number(minmax["max"].as_py()),
                mean=_number(pc.mean(column).as_py()),
                std=_number(pc.stddev(column).as_py()),
            )
    elif _countable(column.type):
        stats["distinct"] = pc.count_distinct(column).as_py()
    return stats


def _numeric(type_: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(type_) or pa.types.is_floating(type_))


def _countable(type_: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_dictionary(type_)
    )


class RunningProfile:
    """``profile`` of a table seen one record batch at a time: counts, min/max, mean and
    standard deviation merged exactly (Chan's pairwise update), distinct values as a set
    union, so a streaming job describes its files without reading them again.

    A column with more than ``DISTINCT_LIMIT`` distinct values keeps no distinct count (the
    set would grow with the file); ``profile`` of a whole table has no such bound.
    """

    def __init__(self) -> None:
        self._schema: pa.Schema | None = None
        self._rows = 0
        self._columns: dict[str, _RunningColumn] = {}

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        if self._schema is None:
            self._schema = batch.schema
            self._columns = {
                field.name: _RunningColumn(field.name, field.type) for field in batch.schema
            }
        self._rows += batch.num_rows
        for name, column in self._columns.items():
            column.add(batch.column(name))

    def result(self) -> dict[str, Any]:
        schema = self._schema
        return {
            "schema": {} if schema is None else {f.name: str(f.type) for f in schema},
            "row_count": self._rows,
            "statistics": {name: column.result() for name, column in self._columns.items()},
        }


def _moments(column: pa.Array | pa.ChunkedArray) -> tuple[Any, Any, float, float]:
    """Minimum, maximum, mean and population variance of a numeric column with values.

    NumPy when the column has no nulls (one buffer, a third of Arrow's per-call cost on
    100k-row chunks); Arrow's kernels otherwise, which skip the nulls."""
    import pyarrow.compute as pc

    if column.null_count == 0:
        values = column.to_numpy()
        return values.min().item(), values.max().item(), float(values.mean()), float(values.var())
    minmax = pc.min_max(column)
    return (
        minmax["min"].as_py(),
        minmax["max"].as_py(),
        float(pc.mean(column).as_py()),
        float(pc.variance(column, ddof=0).as_py()),
    )


class _RunningColumn:
    """One column's running statistics (see ``RunningProfile``)."""

    def __init__(self, name: str, type_: pa.DataType) -> None:
        self.nulls = 0
        self.numeric = name not in ID_COLUMNS and _numeric(type_)
        self.counting = name not in ID_COLUMNS and _countable(type_)
        self.count = 0
        self.low: Any = None
        self.high: Any = None
        self.mean = 0.0
        self.squares = 0.0  # the sum of squared deviations from the mean (M2)
        self.distinct: pa.Array | None = None

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        self.nulls += column.null_count
        present = len(column) - column.null_count
        if self.numeric and present:
            low, high, mean, variance = _moments(column)
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)
            squares = variance * present
            total = self.count + present
            delta = mean - self.mean
            self.squares += squares + delta * delta * self.count * present / total
            self.mean += delta * present / total
            self.count = total
        elif self.counting:
            self._add_distinct(column)

    def _add_distinct(self, column: pa.Array | pa.ChunkedArray) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        values = pc.unique(
            column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        )
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        if self.distinct is not None:
            values = pc.unique(pa.concat_arrays([self.distinct, values]))
        self.distinct = values
        if len(values) > DISTINCT_LIMIT:
            self.counting, self.distinct = False, None

    def result(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"nulls": self.nulls}
        if self.count:
            stats.update(
                min=_number(self.low),
                max=_number(self.high),
                mean=_number(self.mean),
                std=_number(math.sqrt(self.squares / self.count)),
            )
        elif self.counting and self.distinct is not None:
            stats["distinct"] = len(self.distinct) - self.distinct.null_count
        return stats


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def profile_file(path: Path) -> dict[str, Any] | None:
    """Profile a Parquet or CSV file small enough to read; None for anything else."""
    if path.stat().st_size > PROFILE_LIMIT_BYTES:
        return None
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return {"format": "parquet", **profile(pq.read_table(path))}
    if suffix == ".csv":
        import pyarrow.csv

        return {"format": "csv", **profile(pyarrow.csv.read_csv(path))}
    return None
