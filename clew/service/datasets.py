"""Dataset descriptions: schema, row count and simple per-column statistics.

Computed from an Arrow table (what pandas DataFrames and Parquet files become), so the same
numbers are recorded whichever way a dataset arrives.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: connecting and logging params never need pyarrow
    import pyarrow as pa

PROFILE_LIMIT_BYTES = 256 * 1024 * 1024


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
        "statistics": {name: _column_stats(table.column(name)) for name in table.column_names},
    }


def _column_stats(column: pa.ChunkedArray) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    stats: dict[str, Any] = {"nulls": column.null_count}
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        if len(column) - column.null_count > 0:
            minmax = pc.min_max(column)
            stats.update(
                min=_number(minmax["min"].as_py()),
                max=_number(minmax["max"].as_py()),
                mean=_number(pc.mean(column).as_py()),
                std=_number(pc.stddev(column).as_py()),
            )
    elif (
        pa.types.is_string(column.type)
        or pa.types.is_large_string(column.type)
        or pa.types.is_boolean(column.type)
        or pa.types.is_dictionary(column.type)
    ):
        stats["distinct"] = pc.count_distinct(column).as_py()
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
