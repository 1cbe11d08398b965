"""``LoadedModel``: a registered model version loaded for inference, with captured predictions.

It carries the version it came from, so every prediction names the exact model that made it.
Each ``predict`` call gets one ULID; row *i* of that call is prediction ``<ULID>.<i>``, so ids
cost nothing per row. Outputs and (sampled) inputs are handed to the client's capture queue,
which never blocks and never raises into the caller.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from clew.domain import ids
from clew.domain.records import VersionRecord
from clew.errors import InvalidInputError
from clew.service.capture import Call, CaptureTarget
from clew.service.copy_arena import CopyArena

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
    ``capture=False`` turns capture off for this object. ``copy_inputs=False`` queues the
    caller's input arrays themselves instead of a copy: for callers that never modify an
    array after passing it to ``predict``, it saves the copy (most of capture's cost on a
    fast model); an array changed before its batch is written is captured as changed.

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
        copy_inputs: bool = True,
    ) -> None:
        self.raw = model
        self.version = version
        self._client = client
        self.input_sampling = input_sampling
        self.capture = capture
        self.copy_inputs = copy_inputs
        self.last_prediction_ids: PredictionIds | None = None
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
        return self._call("predict", inputs)

    def predict_proba_with_ids(self, inputs: Any) -> tuple[Any, PredictionIds]:
        if not hasattr(self.raw, "predict_proba"):
            raise InvalidInputError(
                f"model {self.version.ref} ({type(self.raw).__name__}) has no predict_proba; "
                "use predict_with_ids."
            )
        return self._call("predict_proba", inputs)

    def _call(self, method: str, inputs: Any) -> tuple[Any, PredictionIds]:
        outputs = getattr(self.raw, method)(inputs)
        references = sys.getrefcount(outputs)
        if self.capture and _only_ours(outputs, references):
            outputs.flags.writeable = False
        call_id = ids.PendingId()
        rows = len(outputs) if hasattr(outputs, "__len__") else 1
        prediction_ids = PredictionIds(call_id, rows)
        self.last_prediction_ids = prediction_ids
        if self.capture:
            self._submit(method, call_id, rows, inputs, outputs)
        return outputs, prediction_ids

    def _submit(
        self, method: str, call_id: ids.PendingId, rows: int, inputs: Any, outputs: Any
    ) -> None:
        """Hand the call to the capture queue; any failure is counted, not raised.

        Outputs made read-only by ``_call`` are the record itself and are queued as they are;
        any other output is copied, like the inputs (unless ``copy_inputs`` is off).
        """
        try:
            service = self._client._capture_service()
            if not self.copy_inputs and self._sampling >= 1:
                kept, sampled = inputs, None
            else:
                kept, sampled = _sample(inputs, rows, self._sampling, service.arena)
            if not _frozen(outputs):
                outputs = _copy(outputs, service.arena)
            now = time.time_ns() // 1_000_000
            service.submit(self._targets[method], Call(call_id, now, rows, outputs, kept, sampled))
        except Exception as error:
            self._client._capture_failed(rows, error)


def _only_ours(outputs: Any, references: int) -> bool:
    """Whether ``outputs`` is a fresh array nothing but ``_call`` refers to.

    Two references (``_call``'s variable and ``getrefcount``'s argument) mean the model kept
    no handle on it (a model returning a cached buffer would), so making it read-only cannot
    break the model, and the caller's copy and the captured record are one unchangeable array.
    """
    return (
        isinstance(outputs, np.ndarray)
        and references <= 2
        and outputs.flags.owndata
        and outputs.flags.writeable
        and not outputs.dtype.hasobject
    )


def _frozen(outputs: Any) -> bool:
    return isinstance(outputs, np.ndarray) and not outputs.flags.writeable


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
    if isinstance(inputs, list):
        return [inputs[i] for i in chosen], chosen
    return np.asarray(inputs)[chosen], chosen


def _copy(value: Any, arena: CopyArena) -> Any:
    """Callers may reuse their arrays after predict returns; capture keeps its own copy."""
    if isinstance(value, np.ndarray):
        return arena.copy(value)
    if hasattr(value, "copy") and hasattr(value, "iloc"):
        return value.copy(deep=True)
    if isinstance(value, list):
        return list(value)
    return value
