"""Dataset profiles: schema, row count and per-column statistics, from Arrow tables and files."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clew.service import datasets

# Touches no store: the embedded pass runs it, the backend and remote passes would repeat it.
pytestmark = pytest.mark.backend_independent


def test_profile_of_numbers_text_and_nulls() -> None:
    table = pa.table(
        {
            "n": pa.array([1, 2, None, 5], type=pa.int64()),
            "x": [0.5, math.inf, 1.5, -1.0],
            "s": ["a", "b", "a", None],
            "b": [True, False, True, True],
            "empty": pa.array([None, None, None, None], type=pa.float64()),
        }
    )
    profile = datasets.profile(table)
    assert profile["row_count"] == 4
    assert profile["schema"] == {
        "n": "int64",
        "x": "double",
        "s": "string",
        "b": "bool",
        "empty": "double",
    }
    stats = profile["statistics"]
    assert stats["n"]["nulls"] == 1 and (stats["n"]["min"], stats["n"]["max"]) == (1, 5)
    assert stats["n"]["mean"] == 8 / 3
    assert stats["x"]["max"] == "inf" and stats["x"]["mean"] == "inf"  # JSON-safe text
    assert stats["s"] == {"nulls": 1, "distinct": 2}
    assert stats["b"] == {"nulls": 0, "distinct": 2}
    assert stats["empty"] == {"nulls": 4}


def test_parquet_bytes_round_trip_and_are_deterministic() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    first = datasets.table_to_parquet(datasets.dataframe_to_table(frame))
    second = datasets.table_to_parquet(datasets.dataframe_to_table(frame.copy()))
    assert first == second  # same content, same digest
    assert pa.BufferReader(first).size() == len(first)
    assert pq.read_table(pa.BufferReader(first)).to_pandas().equals(frame)


def test_profile_file_reads_parquet_and_csv_and_skips_others(tmp_path: Path) -> None:
    parquet = tmp_path / "t.parquet"
    pq.write_table(pa.table({"v": [1.0, 2.0]}), parquet)
    csv = tmp_path / "t.csv"
    csv.write_text("v,w\n1,a\n2,b\n3,c\n")
    other = tmp_path / "t.bin"
    other.write_bytes(b"\x00")
    assert datasets.profile_file(parquet)["row_count"] == 2
    assert datasets.profile_file(parquet)["format"] == "parquet"
    assert datasets.profile_file(csv)["schema"] == {"v": "int64", "w": "string"}
    assert datasets.profile_file(other) is None


def test_running_profile_matches_the_whole_table_and_skips_id_columns() -> None:
    table = pa.table(
        {
            "prediction_id": [f"call.{i}" for i in range(7)],
            "n": pa.array([1, 2, None, 5, 9, -3, 4], type=pa.int64()),
            "x": [0.5, 2.0, 1.5, -1.0, 7.25, 3.0, 0.0],
            "s": ["a", "b", "a", None, "c", "c", "a"],
        }
    )
    running = datasets.RunningProfile()
    for batch in table.to_batches(max_chunksize=3):
        running.add(batch)
    whole, streamed = datasets.profile(table), running.result()
    assert streamed["schema"] == whole["schema"] and streamed["row_count"] == 7
    assert streamed["statistics"]["prediction_id"] == {"nulls": 0}  # unique by construction
    assert whole["statistics"]["prediction_id"] == {"nulls": 0}
    assert streamed["statistics"]["s"] == whole["statistics"]["s"] == {"nulls": 1, "distinct": 3}
    for name in ("n", "x"):
        for key, value in whole["statistics"][name].items():
            assert streamed["statistics"][name][key] == pytest.approx(value), (name, key)


def test_running_profile_of_nothing_has_no_rows() -> None:
    assert datasets.RunningProfile().result() == {"schema": {}, "row_count": 0, "statistics": {}}
