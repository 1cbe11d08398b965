"""Batch scoring of real files (local, CSV, S3 on SeaweedFS): every row captured, traced, and
the job a run in lineage between its input and output datasets."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from capture_support import editable_batch
from serving_support import iris_frame, register
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.errors import InvalidInputError
from clew.service import capture_verification, datasets

runner = CliRunner()


def scoring_input(path: Path, rows: int = 300) -> pd.DataFrame:
    features, _ = iris_frame()
    frame = pd.concat([features] * (rows // len(features) + 1)).head(rows).reset_index(drop=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return frame


def test_cli_scores_a_parquet_file_in_chunks(client: clew.Client, tmp_path: Path) -> None:
    ref = register(client)
    frame = scoring_input(tmp_path / "in.parquet")
    out = tmp_path / "scored" / "out.parquet"
    result = runner.invoke(
        app,
        [
            "predict",
            ref,
            str(tmp_path / "in.parquet"),
            str(out),
            "--chunk-rows",
            "64",
            "-f",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["rows"] == 300 and job["model"] == "iris/1"
    scored = pd.read_parquet(out)
    assert list(scored.columns) == ["prediction_id", "prediction"]
    expected = clew.load_model(ref).raw.predict(frame)
    assert np.array_equal(scored["prediction"].to_numpy(), expected)
    assert (
        scored["prediction_id"].is_unique
        and len({i.split(".")[0] for i in scored["prediction_id"]}) == 5
    )
    assert not list(out.parent.glob(".*partial"))
    trace = client.trace(scored["prediction_id"].iloc[-1])
    assert trace.step("prediction").verified
    assert trace.step("prediction").details["output"] == int(expected[-1])
    assert clew.capture_stats()["dropped"] == 0

    run = client.get_run(job["run_id"])
    assert run.kind == "batch_scoring" and run.status == "FINISHED"
    upstream = client.lineage.upstream(job["output"], max_depth=2).to_pandas()
    edges = set(
        zip(upstream["source"], upstream["association"], upstream["destination"], strict=True)
    )
    job_run = f"run:{job['run_id']}"
    assert (job_run, "Produced", upstream["destination"][0]) in edges
    consumed = upstream[
        (upstream["destination"] == job_run) & (upstream["association"] == "ContributedTo")
    ]
    assert {("dataset", "in.parquet"), ("model", "iris-model")} <= set(
        zip(consumed["source_type"], consumed["source_name"], strict=True)
    )


def test_csv_with_probabilities(client: clew.Client, tmp_path: Path) -> None:
    ref = register(client)
    scoring_input(tmp_path / "in.csv", rows=40)
    result = clew.predict_batch(
        ref, tmp_path / "in.csv", tmp_path / "out.csv", proba=True, input_sampling=0.0
    )
    scored = pd.read_csv(tmp_path / "out.csv")
    assert list(scored.columns) == ["prediction_id", "proba_0", "proba_1", "proba_2"]
    assert np.allclose(scored[["proba_0", "proba_1", "proba_2"]].sum(axis=1), 1.0)
    assert result.rows == 40 and result.output.startswith("dataset:out.csv@sha256:")
    step = client.trace(scored["prediction_id"][39]).step("prediction")
    assert step.verified and step.details["output"] == pytest.approx(scored.iloc[39, 1:].tolist())
    assert step.details.get("inputs") is None  # only outputs captured; the file is in lineage


def test_bad_jobs_are_one_sentence_and_leave_no_output(client: clew.Client, tmp_path: Path) -> None:
    ref = register(client)
    missing = runner.invoke(app, ["predict", ref, str(tmp_path / "nope.parquet"), "o.parquet"])
    assert missing.exit_code == 1
    assert (
        missing.stderr.strip()
        == f"error: {tmp_path / 'nope.parquet'} does not exist; check the path and retry."
    )
    with pytest.raises(InvalidInputError, match=r"cannot tell the input format of .*\.txt"):
        clew.predict_batch(ref, tmp_path / "in.txt", tmp_path / "out.parquet")
    with pytest.raises(InvalidInputError, match="chunk_rows 0 must be a positive integer"):
        clew.predict_batch(ref, tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=0)

    scoring_input(tmp_path / "in.csv", rows=5)
    header, *lines = (tmp_path / "in.csv").read_text().splitlines()
    first = header.split(",")[0]
    doubled = [f"{header},{first}"] + [f"{line},{line.split(',')[0]}" for line in lines]
    (tmp_path / "twice.csv").write_text("\n".join(doubled) + "\n")
    with pytest.raises(InvalidInputError, match=f"more than one column named '{first}'"):
        clew.predict_batch(ref, tmp_path / "twice.csv", tmp_path / "out.csv")

    pd.DataFrame({"colour": ["red", "blue"]}).to_parquet(tmp_path / "wrong.parquet")
    wrong = runner.invoke(
        app, ["predict", ref, str(tmp_path / "wrong.parquet"), str(tmp_path / "out.parquet")]
    )
    assert wrong.exit_code == 1 and wrong.stderr.count("\n") == 1, wrong.output
    assert not list(tmp_path.glob("*out.parquet*"))
    runs = client.search_runs(experiments=["batch-scoring"])
    assert list(runs["status"]) == ["FAILED", "FAILED"]  # the repeated column, the wrong one


@pytest.mark.s3
def test_input_and_output_on_s3(client: clew.Client, s3_artifacts: str, tmp_path: Path) -> None:
    import fsspec

    ref = register(client)
    frame = scoring_input(tmp_path / "in.parquet", rows=100)
    prefix = f"s3://clew-test/batch-{uuid.uuid4().hex[:8]}"
    # Not fsspec's cached instance: another test in this process may have made one before the
    # credentials were in the environment, and s3fs keeps the client it connected with.
    filesystem = fsspec.filesystem("s3", skip_instance_cache=True)
    filesystem.put(str(tmp_path / "in.parquet"), f"{prefix}/in.parquet")
    result = clew.predict_batch(ref, f"{prefix}/in.parquet", f"{prefix}/out.parquet", chunk_rows=30)
    with filesystem.open(f"{prefix}/out.parquet", "rb") as handle:
        scored = pd.read_parquet(handle)
    assert len(scored) == 100 and result.rows == 100
    assert np.array_equal(scored["prediction"].to_numpy(), clew.load_model(ref).raw.predict(frame))
    assert filesystem.ls(prefix) == [f"{prefix[5:]}/in.parquet", f"{prefix[5:]}/out.parquet"]
    assert client.trace(scored["prediction_id"].iloc[0]).step("prediction").verified


def test_both_files_are_described_as_a_whole_read_would(
    client: clew.Client, tmp_path: Path
) -> None:
    """The datasets' profiles come from the streamed chunks, yet say what reading each file
    whole says; the id column gets no distinct count (unique by construction)."""
    ref = register(client)
    scoring_input(tmp_path / "in.parquet", rows=130)
    job = clew.predict_batch(ref, tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=50)
    artifacts = client._service.artifacts
    for role, path in (("input", "in.parquet"), ("output", "out.parquet")):
        recorded = artifacts.resolve(getattr(job, role)).properties
        whole = datasets.profile_file(tmp_path / path)
        assert whole is not None and recorded["row_count"] == whole["row_count"] == 130
        assert recorded["format"] == "parquet" and recorded["schema"] == whole["schema"]
        for name, stats in whole["statistics"].items():
            assert recorded["statistics"][name] == pytest.approx(stats), (role, name)
    output = artifacts.resolve(job.output).properties["statistics"]
    assert output["prediction_id"] == {"nulls": 0}


@pytest.mark.parametrize("sampling", [1.0, 0.5])
def test_captured_inputs_are_the_rows_of_the_file(
    client: clew.Client, tmp_path: Path, sampling: float
) -> None:
    """Capture keeps the Arrow rows read from the file (no DataFrame copy): each traced row's
    inputs are that row of the file, by column name, in a file whose columns are not in the
    signature's order."""
    ref = register(client)
    frame = scoring_input(tmp_path / "in.parquet", rows=60)
    frame = frame[list(reversed(frame.columns))]
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    clew.predict_batch(
        ref,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        chunk_rows=50,
        input_sampling=sampling,
    )
    scored = pd.read_parquet(tmp_path / "out.parquet")
    kept = 0
    for row in range(len(scored)):
        step = client.trace(scored["prediction_id"][row]).step("prediction")
        assert step.verified
        inputs = step.details.get("inputs")
        if inputs is not None:
            kept += 1
            assert inputs == frame.iloc[row].to_dict()
    assert kept == 60 if sampling == 1.0 else 0 < kept < 60


@pytest.mark.embedded_only  # rewrites the store's capture file
def test_a_tampered_row_of_a_scored_file_is_named(client: clew.Client, tmp_path: Path) -> None:
    """A batch job's capture verifies as a whole; one altered input value fails the leaf that
    row hashes in (trace names the row), ``verify_batches`` names the batch, and rows of the
    other leaves still verify."""
    ref = register(client)
    scoring_input(tmp_path / "in.parquet", rows=100)
    clew.predict_batch(ref, tmp_path / "in.parquet", tmp_path / "out.parquet")
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert capture_verification.verify_batches(client.store) == (1, [])
    with editable_batch(client) as path:
        table = pq.read_table(path)
        inputs = table.column("inputs").combine_chunks()
        lengths = inputs.field("sepal_length").to_pylist()
        lengths[40] += 1.0
        fields = [
            pa.array(lengths) if name == "sepal_length" else inputs.field(name)
            for name in (field.name for field in inputs.type)
        ]
        altered = pa.StructArray.from_arrays(fields, [field.name for field in inputs.type])
        index = table.column_names.index("inputs")
        pq.write_table(table.set_column(index, "inputs", altered), path)
    step = client.trace(scored["prediction_id"][40]).step("prediction")
    assert not step.verified
    assert "does not match its inclusion proof" in step.reason
    assert client.trace(scored["prediction_id"][70]).step("prediction").verified
    [problem] = capture_verification.verify_batches(client.store)[1]
    assert problem.path.endswith(".parquet") and "digest" in problem.reason
