"""``LoadedModel``: a registered model version loaded for inference, with captured predictions.

It carries the version it came from, so every prediction names the exact model that made it.
Each ``predict`` call gets one ULID; row *i* of that call is prediction ``<ULID>.<i>``, so ids
cost nothing per row. Outputs and (sampled) inputs are handed to the client's capture queue,
which never blocks and never raises into the caller.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from clew.client import input_guard
from clew.client.capture_queue import CaptureQueue
from clew.client.copy_arena import CopyArena
from clew.domain import ids
from clew.domain.captures import Call, CaptureTarget
from clew.domain.records import VersionRecord
from clew.errors import InvalidInputError

if TYPE_CHECKING:
    from clew.client.client import Client


class PredictionIds(Sequence[str]):
    """The ids of one predict call's rows, made on demand (``ids[i] == f"{call}.{i}"``)."""

    def __init__(self, call: str | ids.PendingId, count: int) -> None:
        self._call = call
        self._count = count

    @property
    def call(self) -> str:
        """The call's ULID (written out on first use, see ``ids.PendingId``)."""
        return str(self._call)

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [f"{self.call}.{i}" for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"row {index} is outside this call's {self._count} predictions")
        return f"{self.call}.{index}"

    def __iter__(self) -> Iterator[str]:
        return (f"{self.call}.{i}" for i in range(self._count))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PredictionIds):
            return (self.call, self._count) == (other.call, other._count)
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.call, self._count))

    def __repr__(self) -> str:
        return f"<PredictionIds {self.call}.0..{self._count - 1}>"


class LoadedModel:
    """A loaded model version; ``predict`` and ``predict_proba`` capture what they return.

    ``input_sampling`` is the share of rows whose inputs are kept (outputs are always kept);
    ``capture=False`` turns capture off for this object. Inputs are checked against the
    version's signature first (``input_guard.SignatureCheck``): wrong columns are refused in
    one sentence, before the model or capture sees them.

    A NumPy input of 64 kB or more is queued as it is, with an ``InputGuard``: copying it
    would cost more than a fast model's whole predict budget. If the caller changes the
    array before its batch is written, the writer notices, withholds that call's inputs (the
    signed batch header lists the call), warns, and this version copies its inputs from then
    on. ``copy_inputs=True`` copies every call's inputs instead (exact, at 20-70 µs per
    800 kB). Smaller arrays, DataFrames and lists are always copied.

    With capture on, a NumPy array the model returns is handed back read-only and queued as
    it is: the caller's predictions and the captured record are one array nobody can change,
    at no copy (``.copy()`` gives an editable one). Outputs the model still holds a
    reference to, and anything that is not a NumPy array, are copied instead.
    """

    def __init__(
        self,
        model: Any,
        version: VersionRecord,
        client: Client,
        *,
        input_sampling: float = 1.0,
        capture: bool = True,
        copy_inputs: bool = False,
    ) -> None:
        self.raw = model
        self.version = version
        self._client = client
        self.input_sampling = input_sampling
        self.capture = capture
        self.copy_inputs = copy_inputs
        self._last_call: tuple[ids.PendingId, int] | None = None
        self._service: CaptureQueue | None = None  # the client's, made on first capture
        self._expects = input_guard.signature_check(version.ref, version.signature)
        self._targets = {
            method: CaptureTarget(version.id, version.name, version.version, version.digest, method)
            for method in ("predict", "predict_proba")
        }

    def __repr__(self) -> str:
        return f"<LoadedModel {self.version.ref} {self.version.digest[:19]}>"

    @property
    def raw_model(self) -> Any:
        return self.raw

    @property
    def can_predict(self) -> bool:
        """False for a version stored as plain files (its ``predict`` raises, saying so), so
        an endpoint can report itself unhealthy instead of failing every request."""
        return callable(getattr(self.raw, "predict", None))

    @property
    def last_prediction_ids(self) -> PredictionIds | None:
        """The ids of the latest call's predictions (None before the first call)."""
        return None if self._last_call is None else PredictionIds(*self._last_call)

    @property
    def input_sampling(self) -> float:
        return self._sampling

    @input_sampling.setter
    def input_sampling(self, rate: float) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise InvalidInputError(f"input_sampling {rate!r} must be a number from 0 to 1.")
        self._sampling = float(rate)

    def predict(self, inputs: Any) -> Any:
        return self._call("predict", inputs)[0]

    def predict_proba(self, inputs: Any) -> Any:
        if not hasattr(self.raw, "predict_proba"):
            raise InvalidInputError(
                f"model {self.version.ref} ({type(self.raw).__name__}) has no predict_proba; "
                "use predict."
            )
        return self._call("predict_proba", inputs)[0]

    def predict_with_ids(self, inputs: Any) -> tuple[Any, PredictionIds]:
        """Outputs and their prediction ids (``ids[i]`` names row ``i``)."""
        outputs, call_id, rows = self._call("predict", inputs)
        return outputs, PredictionIds(call_id, rows)

    def predict_proba_with_ids(self, inputs: Any) -> tuple[Any, PredictionIds]:
        if not hasattr(self.raw, "predict_proba"):
            raise InvalidInputError(
                f"model {self.version.ref} ({type(self.raw).__name__}) has no predict_proba; "
                "use predict_with_ids."
            )
        outputs, call_id, rows = self._call("predict_proba", inputs)
        return outputs, PredictionIds(call_id, rows)

    def _predict_table(self, method: str, table: Any) -> tuple[Any, PredictionIds]:
        """Predict the rows of an Arrow table (batch scoring): the model gets a DataFrame made
        from it, and capture keeps ``table`` itself. Arrow data cannot change after the call,
        so it is neither copied nor guarded, and nothing converts the DataFrame back."""
        if method == "predict_proba" and not hasattr(self.raw, "predict_proba"):
            raise InvalidInputError(
                f"model {self.version.ref} ({type(self.raw).__name__}) has no predict_proba; "
                "score without --proba (proba=False)."
            )
        outputs, call_id, rows = self._call(method, table.to_pandas(), table)
        return outputs, PredictionIds(call_id, rows)

    def _call(self, method: str, inputs: Any, table: Any = None) -> tuple[Any, ids.PendingId, int]:
        """The model's outputs, their call id and row count, with the call handed to capture.

        This is capture's hot path: a fast model's 5% budget is ~10 µs, and with the model's
        work filling the CPU caches every function called here costs ~0.5 µs, so the common
        case (a large array, guarded rather than copied) is written out in one place and the
        rest is left to ``_submit`` and the writer thread. ``table`` is the Arrow table
        ``inputs`` was made from, to capture instead of them (``_predict_table``).
        """
        predict = getattr(self.raw, method, None)
        if predict is None:
            raise self._cannot_predict()
        if self._expects is not None:
            inputs = self._expects.check(inputs)
        outputs = predict(inputs)
        references = sys.getrefcount(outputs)
        frozen = self.capture and _freeze(outputs, references)
        guard, service = None, self._service
        if self.capture:
            try:
                if service is None:
                    service = self._service = self._client._capture_service()
                if (
                    not self.copy_inputs
                    and table is None
                    and self._sampling >= 1
                    and isinstance(inputs, np.ndarray)
                    and inputs.nbytes >= input_guard.MIN_BYTES
                    and not inputs.dtype.hasobject
                    and self.version.id not in service.copying_versions
                ):
                    guard = input_guard.guard(inputs)
            except Exception:  # counted by _submit, which meets the same failure
                service = None
        call_id = ids.PendingId()
        rows = len(outputs) if hasattr(outputs, "__len__") else 1
        self._last_call = (call_id, rows)
        if guard is not None and service is not None and frozen:
            try:
                call = Call(call_id, call_id.time_ms, rows, outputs, inputs, None, guard)
                service.submit(self._targets[method], call)
            except Exception as error:  # capture never raises into predict
                self._client._capture_failed(rows, error)
        elif self.capture:
            self._submit(method, call_id, rows, inputs, outputs, frozen, table)
        return outputs, call_id, rows

    def _cannot_predict(self) -> InvalidInputError:
        """A version saved as plain files (a directory, or a file of no known format)."""
        return InvalidInputError(
            f"model {self.version.ref} was logged as plain files and loads as a "
            f"{type(self.raw).__name__}, which cannot predict; log the model object, an .onnx "
            "file or a torch.export .pt2 file instead (see docs/models.md)."
        )

    def _submit(
        self,
        method: str,
        call_id: ids.PendingId,
        rows: int,
        inputs: Any,
        outputs: Any,
        frozen: bool,
        table: Any = None,
    ) -> None:
        """Copy what capture must keep and queue the call; any failure is counted, not raised.

        Outputs made read-only by ``_call`` are the record itself and are queued as they are;
        any other output is copied, like inputs ``_call`` could not guard. ``table``, the Arrow
        rows a batch job read, is captured in place of ``inputs``, in their checked order.
        """
        try:
            if table is not None:
                inputs = _in_checked_order(table, inputs)
            service = self._client._capture_service()
            kept, sampled = _sample(inputs, rows, self._sampling, service.arena)
            if not frozen:
                outputs = _copy(outputs, service.arena)
            call = Call(call_id, call_id.time_ms, rows, outputs, kept, sampled)
            service.submit(self._targets[method], call)
        except Exception as error:
            self._client._capture_failed(rows, error)


def _in_checked_order(table: Any, checked: Any) -> Any:
    """The Arrow table's columns in the order the signature check put the DataFrame's in
    (selecting columns copies no data)."""
    if not hasattr(checked, "columns"):
        return table
    return table.select([str(name) for name in checked.columns])


def _freeze(outputs: Any, references: int) -> bool:
    """Make ``outputs`` read-only if it is a fresh array nothing but ``_call`` refers to;
    True when it is read-only now (and so can be queued as the record itself).

    Two references (``_call``'s variable and ``getrefcount``'s argument) mean the model kept
    no handle on it (a model returning a cached buffer would), so making it read-only cannot
    break the model, and the caller's copy and the captured record are one unchangeable array.
    """
    if not isinstance(outputs, np.ndarray) or outputs.dtype.hasobject:
        return False
    flags = outputs.flags
    if not flags.writeable:
        return True
    if references <= 2 and flags.owndata:
        outputs.setflags(write=False)
        return True
    return False


def _sample(
    inputs: Any, rows: int, rate: float, arena: CopyArena
) -> tuple[Any | None, np.ndarray | None]:
    """A private copy of the inputs to keep, and which rows they are (None: all of them)."""
    if rate <= 0:
        return None, None
    if rate >= 1:
        return _copy(inputs, arena), None
    chosen = np.flatnonzero(np.random.default_rng(random.getrandbits(64)).random(rows) < rate)
    if hasattr(inputs, "iloc"):
        return inputs.iloc[chosen].copy(), chosen
    if hasattr(inputs, "schema"):  # an Arrow table: a new one, made of the chosen rows
        return inputs.take(chosen), chosen
    if isinstance(inputs, list):
        return [inputs[i] for i in chosen], chosen
    return np.asarray(inputs)[chosen], chosen


def _copy(value: Any, arena: CopyArena) -> Any:
    """Callers may reuse their arrays after predict returns; capture keeps its own copy
    (an Arrow table, which cannot change, is kept as it is)."""
    if isinstance(value, np.ndarray):
        return arena.copy(value)
    if hasattr(value, "copy") and hasattr(value, "iloc"):
        return value.copy(deep=True)
    if isinstance(value, list):
        return list(value)
    return value
