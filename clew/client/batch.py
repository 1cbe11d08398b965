"""Batch scoring: a whole Parquet or CSV file through one model version, every row captured.

``clew.predict_batch("churn@production", "s3://bucket/in.parquet", "out.parquet")`` streams the
input in chunks (memory stays bounded by the chunk, whatever the file's size), predicts each
chunk through ``LoadedModel`` so each row gets a prediction id that ``clew trace`` follows, and
writes ``prediction_id`` plus the outputs, row for row in the input's order. The job is a run
of kind ``batch_scoring`` in lineage: the input dataset and the model consumed, the output
dataset produced. The output appears under its name only when every row is written and
captured; a failed job leaves no output and a FAILED run.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.domain.object_urls import filesystem_for
from clew.errors import ClewError, InvalidInputError
from clew.service import datasets

if TYPE_CHECKING:
    import pyarrow as pa

    from clew.client.client import Client
    from clew.client.loaded_model import LoadedModel
    from clew.client.run import ActiveRun
    from clew.service.protocols import Backend

FORMATS = ("parquet", "csv")
DEFAULT_CHUNK_ROWS = 100_000
EXPERIMENT = "batch-scoring"
RUN_KIND = "batch_scoring"
Progress = Callable[[int, int | None], None]  # rows done, rows in all (None: unknown)


@dataclass(frozen=True)
class BatchResult:
    """What a batch job did: the run that records it, the version and both datasets."""

    run_id: str
    model: str
    digest: str
    rows: int
    input: str
    output: str
    output_path: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model": self.model,
            "digest": self.digest,
            "rows": self.rows,
            "input": self.input,
            "output": self.output,
            "output_path": self.output_path,
        }


class BatchMixin:
    """``Client.predict_batch``."""

    if TYPE_CHECKING:
        _service: Backend

        def load_model(self, ref: str) -> LoadedModel: ...

        def start_run(
            self, experiment: str, name: str | None, kind: str, *, params: dict[str, Any]
        ) -> ActiveRun: ...

    def predict_batch(
        self,
        ref: str,
        input: str | Path,
        output: str | Path,
        *,
        proba: bool = False,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        format: str | None = None,
        progress: Progress | None = None,
        input_sampling: float = 1.0,
    ) -> BatchResult:
        """Score every row of ``input`` (Parquet or CSV, a path or an ``s3://`` URL) with
        version ``ref`` into ``output``, each row captured; the job is recorded as a run.

        ``format`` is the input's and output's format when their suffix does not say it;
        ``progress(done, total)`` is called after each chunk; ``input_sampling`` is the share
        of rows whose inputs are captured beside their outputs (every output always is, and
        the whole input file is in lineage either way)."""
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise InvalidInputError(f"chunk_rows {chunk_rows!r} must be a positive integer.")
        source, target = str(input), str(output)
        source_format = _format(source, format, "input")
        target_format = _format(target, format, "output")
        _check_readable(source)
        model = self.load_model(ref)
        model.input_sampling = input_sampling
        model_artifact = self._service.artifacts.resolve(f"artifact:{model.version.artifact_id}")
        params = {
            "model": model.version.ref,
            "digest": model.version.digest,
            "input": source,
            "input_sampling": input_sampling,
        }
        job = _Job(model, proba, chunk_rows, progress)
        with self.start_run(
            EXPERIMENT, f"predict {model.version.ref}", RUN_KIND, params=params
        ) as run:
            run.log_input(model_artifact)
            try:
                scored = job.run(source, source_format, target, target_format)
            except BaseException:
                with contextlib.suppress(Exception):  # the job's own error is the one to see
                    run.log_input(source, name=_name(source), type="dataset")
                raise
            input_record = run.log_input(
                source, name=_name(source), type="dataset", properties=job.described("input")
            )
            output_record = run.log_output(
                target,
                name=_name(target),
                type="dataset",
                properties=job.described("output"),
                derived_from=[input_record],
            )
            run.log_metric("rows", float(scored))
        return BatchResult(
            run_id=run.id,
            model=model.version.ref,
            digest=model.version.digest,
            rows=scored,
            input=f"dataset:{input_record.name}@{input_record.digest}",
            output=f"dataset:{output_record.name}@{output_record.digest}",
            output_path=target,
        )


class _Job:
    """One pass over the input: read a chunk, predict (captured), write, repeat.

    Both files are profiled from the chunks as they pass (``datasets.RunningProfile``), so
    recording them in lineage does not read them a second time to describe them.
    """

    def __init__(
        self, model: LoadedModel, proba: bool, chunk_rows: int, progress: Progress | None
    ) -> None:
        self.model = model
        self.proba = proba
        self.chunk_rows = chunk_rows
        self.progress = progress
        self.profiles = {"input": datasets.RunningProfile(), "output": datasets.RunningProfile()}
        self.formats = {"input": "", "output": ""}

    def described(self, role: str) -> dict[str, Any]:
        """The properties of the ``role`` file's dataset: its format and profile."""
        return {"format": self.formats[role], **self.profiles[role].result()}

    def run(self, source: str, source_format: str, target: str, target_format: str) -> int:
        """Rows scored; the output is renamed into place only after every row is captured."""
        client = self.model._client
        before = client.capture_stats()
        partial = _partial_name(target)
        filesystem, partial_path = _filesystem(partial)
        rows = 0
        self.formats = {"input": source_format, "output": target_format}
        try:
            with _writer(filesystem, partial_path, target_format) as write:
                total, chunks = _chunks(source, source_format, self.chunk_rows)
                for chunk in chunks:
                    self._make_room(chunk.num_rows)
                    self.profiles["input"].add(chunk)
                    scored = self._score(chunk, source, rows)
                    self.profiles["output"].add(scored)
                    write(scored)
                    rows += chunk.num_rows
                    if self.progress is not None:
                        self.progress(rows, total)
            if rows == 0:
                raise InvalidInputError(f"{source} has no rows; there is nothing to score.")
            self._check_captured(before, rows)
            _, target_path = _filesystem(target)
            filesystem.mv(partial_path, target_path)
        except BaseException:
            with contextlib.suppress(OSError):
                filesystem.rm(partial_path)
            raise
        return rows

    def _score(self, chunk: pa.RecordBatch, source: str, first: int) -> pa.Table:
        import pyarrow as pa

        try:
            outputs, ids = self._predict(pa.Table.from_batches([chunk]))
        except ClewError:
            raise
        except Exception as failure:
            reason = (str(failure).strip().splitlines() or [""])[0]
            raise InvalidInputError(
                f"model {self.model.version.ref} could not predict rows {first}-"
                f"{first + chunk.num_rows - 1} of {source} ({type(failure).__name__}: "
                f"{reason}); check the file's columns against the version's signature."
            ) from failure
        import numpy as np

        columns: dict[str, Any] = {"prediction_id": self._prediction_ids(ids.call, len(ids))}
        values = np.asarray(outputs)
        if values.ndim == 2:
            names = _class_names(self.model, values.shape[1])
            columns |= {f"proba_{name}": values[:, i] for i, name in enumerate(names)}
        else:
            columns["prediction"] = values
        return pa.table(columns)

    def _prediction_ids(self, call: str, rows: int) -> pa.Array:
        """``f"{call}.{i}"`` for every row, laid out as bytes (``prediction_id_column``): a
        Python string per row cost more than a fast model's whole predict."""
        from clew.domain.captures import prediction_id_column

        return prediction_id_column([call], [rows])

    def _predict(self, table: pa.Table) -> tuple[Any, Any]:
        return self.model._predict_table("predict_proba" if self.proba else "predict", table)

    def _make_room(self, rows: int) -> None:
        """Wait for the capture writer rather than let the queue drop a chunk: a batch job
        may wait, a lost capture may not happen."""
        client = self.model._client
        queue = client._capture_service()
        if queue.stats().queued + rows > queue.settings.max_queued_rows // 2:
            client.flush_captures(timeout=None)

    def _check_captured(self, before: dict[str, Any], rows: int) -> None:
        client = self.model._client
        client.flush_captures(timeout=None)
        after = client.capture_stats()
        lost = (after["dropped"] - before["dropped"]) + (after["failed"] - before["failed"])
        if lost:
            raise ClewError(
                f"{lost} of {rows} predictions could not be captured "
                f"({after['last_error'] or 'the capture queue was full'}); no output was "
                "written; fix the capture store and run the job again."
            )


def _format(location: str, given: str | None, role: str) -> str:
    if given is not None:
        if given not in FORMATS:
            raise InvalidInputError(f"format {given!r} is not one of {', '.join(FORMATS)}.")
        return given
    suffix = location.split("?")[0].rsplit(".", 1)[-1].lower()
    if suffix in ("parquet", "pq"):
        return "parquet"
    if suffix == "csv":
        return "csv"
    raise InvalidInputError(
        f"cannot tell the {role} format of {location}; name it .parquet or .csv, "
        "or pass format='parquet' or 'csv' (clew predict --file-format)."
    )


def _filesystem(location: str) -> tuple[Any, str]:
    if "://" in location and not location.startswith("file://"):
        return filesystem_for(location)
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem(), str(Path(location.removeprefix("file://")).expanduser().resolve())


def _check_readable(source: str) -> None:
    filesystem, path = _filesystem(source)
    try:
        exists = filesystem.isfile(path)
    except Exception as failure:
        raise InvalidInputError(f"cannot read {source} ({failure}); check the URL.") from failure
    if not exists:
        raise InvalidInputError(f"{source} does not exist; check the path and retry.")


def _name(location: str) -> str:
    return location.split("?")[0].rstrip("/").rsplit("/", 1)[-1]


def _partial_name(target: str) -> str:
    base, _, query = target.partition("?")
    head, _, tail = base.rpartition("/")
    partial = f"{head}/.{tail}.{uuid.uuid4().hex[:8]}.partial" if head else f".{tail}.partial"
    return partial + (f"?{query}" if query else "")


def _chunks(
    source: str, format: str, chunk_rows: int
) -> tuple[int | None, Iterator[pa.RecordBatch]]:
    """The input's row count when the file says it (Parquet), and its chunks."""
    if format == "parquet":
        import pyarrow.parquet as pq

        handle = _open_input(source)
        try:
            reader = pq.ParquetFile(handle)
        except Exception as failure:
            handle.close()
            raise InvalidInputError(f"{source} is not a Parquet file ({failure}).") from failure
        _refuse_repeated_columns(source, reader.schema_arrow.names, handle)
        return reader.metadata.num_rows, _closing(handle, reader.iter_batches(chunk_rows))
    import pyarrow.csv as csv

    handle = _open_input(source)
    options = csv.ReadOptions(block_size=max(1 << 20, chunk_rows * 64))
    try:
        reader = csv.open_csv(handle, read_options=options)
    except Exception as failure:
        handle.close()
        raise InvalidInputError(f"{source} is not a readable CSV file ({failure}).") from failure
    _refuse_repeated_columns(source, reader.schema.names, handle)
    return None, _closing(handle, reader)


def _refuse_repeated_columns(source: str, names: list[str], handle: Any) -> None:
    """A column name given twice: the model's inputs are chosen by name, so which of the two
    it would see is undefined."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        handle.close()
        raise InvalidInputError(
            f"{source} has more than one column named {', '.join(map(repr, repeated))}; "
            "give each column its own name and retry."
        )


def _open_input(source: str) -> Any:
    """The input opened for reading: a local file by Arrow itself (through a Python file
    object, a million rows cost ~0.05 CPU-s more; not memory-mapped, which a file truncated
    meanwhile would turn into a crash), anything else by fsspec."""
    filesystem, path = _filesystem(source)
    if "://" in source and not source.startswith("file://"):
        return filesystem.open(path, "rb")
    import pyarrow as pa

    try:
        return pa.OSFile(path, "r")
    except OSError as failure:
        raise InvalidInputError(
            f"cannot read {source} ({failure}); check its permissions."
        ) from failure


def _closing(handle: Any, batches: Any) -> Iterator[pa.RecordBatch]:
    try:
        yield from batches
    finally:
        handle.close()


@contextlib.contextmanager
def _writer(filesystem: Any, path: str, format: str) -> Iterator[Callable[[pa.Table], None]]:
    """A function that appends one scored table to ``path``, closed when the block ends."""
    parent = path.rsplit("/", 1)[0]
    if parent and not filesystem.exists(parent) and "://" not in parent:
        filesystem.makedirs(parent, exist_ok=True)
    with filesystem.open(path, "wb") as handle:
        state: dict[str, Any] = {}

        def write(table: pa.Table) -> None:
            if "writer" not in state:
                state["writer"] = _open_writer(handle, table.schema, format)
            state["writer"].write_table(table)

        try:
            yield write
        finally:
            if "writer" in state:
                state["writer"].close()


def _open_writer(handle: Any, schema: pa.Schema, format: str) -> Any:
    if format == "parquet":
        import pyarrow.parquet as pq

        # dictionary pages for the outputs only: unique ids never fit one, trying costs time
        outputs = [name for name in schema.names if name != "prediction_id"]
        return pq.ParquetWriter(handle, schema, use_dictionary=outputs)
    import pyarrow.csv as csv

    return csv.CSVWriter(handle, schema)


def _class_names(model: LoadedModel, count: int) -> list[str]:
    classes = getattr(model.raw, "classes_", None)
    if classes is not None and len(classes) == count:
        return [str(name) for name in classes]
    return [str(i) for i in range(count)]


def _default() -> Client:
    from clew.client.default import get_client

    return get_client()


def predict_batch(
    ref: str,
    input: str | Path,
    output: str | Path,
    *,
    proba: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    progress: Progress | None = None,
    input_sampling: float = 1.0,
) -> BatchResult:
    """``Client.predict_batch`` on the default client."""
    return _default().predict_batch(
        ref,
        input,
        output,
        proba=proba,
        chunk_rows=chunk_rows,
        format=format,
        progress=progress,
        input_sampling=input_sampling,
    )
