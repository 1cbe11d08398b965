"""Input guards: check inputs against the version's signature before the model sees them, and
notice that a caller changed an input array between ``predict`` and capture.

``SignatureCheck`` is built once per loaded version from its signature's inputs; ``check`` runs
on every predict call (in-process, ``clew serve`` and batch scoring alike, as all of them call
``LoadedModel``): missing, extra or wrongly typed columns are refused in one sentence naming
them, and a DataFrame with the right columns in another order is put in the model's order. An
array's checks are its width and dtype (about 1 µs); a DataFrame's, its names and dtypes.

By default ``predict`` queues a large input array itself rather than a copy: copying 800 kB
costs 20-70 µs, more than a fast model's whole 5% budget, while a guard costs about 2 µs.
A guard keeps the array's shape, dtype and ``SAMPLES`` of its elements at random positions
(drawn once per array size, spread over every column); the writer thread copies the array
and compares the copy with the guard before it writes the call. A caller who refills the
same buffer for its next batch, or normalises an array in place after predicting, changes
sampled elements and is caught; an edit of a few elements can slip between the samples,
which is why ``LoadedModel(copy_inputs=True)`` copies on the caller's thread instead.

A guard is a plain tuple ``(shape, dtype, positions, sampled elements)``: one is made on every
predict call. Elements are compared as bytes, so a NaN that stays NaN is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from clew.domain.captures import InputGuard
from clew.errors import InvalidInputError

SAMPLES = 256
MIN_BYTES = 64 * 1024  # smaller arrays are copied: a copy that cheap is exact
_CACHED_SIZES = 64

_positions: dict[int, np.ndarray] = {}
# Not the global NumPy generator, which ``clew.seed`` seeds: positions must not be predictable.
_random = np.random.default_rng()


def guard(array: np.ndarray) -> InputGuard:
    """The guard of an array (of ``MIN_BYTES`` or more, not of objects) as it is now."""
    positions = _positions.get(array.size)
    if positions is None:
        positions = _sample_positions(array.size)
    return array.shape, array.dtype, positions, array.take(positions)


def unchanged(guard: InputGuard, array: np.ndarray) -> bool:
    """Whether ``array`` still has the shape, dtype and sampled elements it had when guarded."""
    shape, dtype, positions, sample = guard
    return (
        array.shape == shape
        and array.dtype == dtype
        and array.take(positions).tobytes() == sample.tobytes()
    )


def _sample_positions(size: int) -> np.ndarray:
    """``SAMPLES`` distinct flat positions, uniformly at random and sorted, kept per array size
    (drawing them costs more than sampling). Random rather than strided: a stride that is a
    multiple of the row width would sample a single column."""
    positions = np.sort(_random.choice(size, size=min(SAMPLES, size), replace=False))
    if len(_positions) >= _CACHED_SIZES:
        _positions.clear()
    _positions[size] = positions
    return positions


# Which NumPy dtype kinds each family of Arrow types accepts (b bool, i/u integers, f floats,
# O objects, U/S text, M/m times); an Arrow type not listed here is not checked.
_NUMBERS = "biuf"
_FAMILIES = {"number": _NUMBERS, "bool": "biu", "text": "OUS", "time": "MmO"}
_NUMBER_VALUES = {"integer", "floating", "mixed-integer-float", "boolean", "decimal", "empty"}
_VALUES = {  # what pandas.api.types.infer_dtype may say of an object column each family takes
    "number": _NUMBER_VALUES,
    "bool": _NUMBER_VALUES,
    "text": {"string", "empty", "categorical"},
    "time": {"datetime64", "datetime", "date", "empty"},
}
_LISTED = 8  # column names listed in an error before "and N more"


class SignatureCheck:
    """The inputs a version's signature names: their names (if all have one), count and types."""

    def __init__(self, ref: str, inputs: Sequence[Mapping[str, Any]]) -> None:
        self.ref = ref
        names = [column.get("name") for column in inputs]
        self.names: tuple[str, ...] | None = (
            tuple(str(name) for name in names) if names and all(names) else None
        )
        self._name_list = list(self.names or ())
        self.width = len(inputs)
        self.families = [_family(column.get("type")) for column in inputs]
        typed = [_FAMILIES[f] for f in self.families if f is not None]
        self.array_kinds = "".join(k for k in "biufOUSMm" if all(k in kinds for kinds in typed))

    def check(self, inputs: Any) -> Any:
        """``inputs`` if they fit the signature (a DataFrame put in the model's column order);
        raises ``InvalidInputError`` naming the columns that do not."""
        if isinstance(inputs, np.ndarray):
            if not self._fits(inputs):
                self._refuse_array(inputs)
            return inputs
        if hasattr(inputs, "columns") and hasattr(inputs, "iloc"):
            return self._frame(inputs)
        shape = getattr(inputs, "shape", None)
        if shape is not None and len(shape) >= 2:
            self._width(math.prod(shape[1:]))
        elif isinstance(inputs, list) and inputs and isinstance(inputs[0], list | tuple):
            self._width(len(inputs[0]))
        return inputs

    def _fits(self, array: np.ndarray) -> bool:
        width = 1 if array.ndim == 1 else math.prod(array.shape[1:])
        return (
            array.ndim >= (2 if self.width > 1 else 1)
            and width == self.width
            and (array.dtype.kind in self.array_kinds)
        )

    def _refuse_array(self, array: np.ndarray) -> None:
        if array.ndim < 2 and self.width > 1:
            raise InvalidInputError(
                f"inputs for {self.ref} are a {array.ndim}-D array of shape {array.shape}; pass "
                f"rows: a 2-D array of shape (rows, {self.width})."
            )
        self._width(1 if array.ndim == 1 else math.prod(array.shape[1:]))
        wrong = [
            i for i, f in enumerate(self.families) if f and not _array_column_fits(array, i, f)
        ]
        if not wrong and array.dtype.kind in "OUS":
            return  # every value converts: objects or text holding only numbers
        labels = [self.names[i] if self.names else f"column {i}" for i in wrong]
        self._wrong_types(labels, [self.families[i] or "" for i in wrong], str(array.dtype))

    def _width(self, width: int) -> None:
        if width != self.width:
            raise InvalidInputError(
                f"inputs for {self.ref} have {width} columns; the model takes {self.width}"
                + (f" ({_listed(self.names)})" if self.names else "")
                + "."
            )

    def _frame(self, frame: Any) -> Any:
        if self.names is None:
            self._width(len(frame.columns))
        elif frame.columns.tolist() != self._name_list:
            frame = self._reordered(frame)
        dtypes = frame.dtypes.tolist()
        wrong = [
            i
            for i, (family, dtype) in enumerate(zip(self.families, dtypes, strict=False))
            if family is not None and not _frame_column_fits(frame, i, dtype, family)
        ]
        if wrong:
            labels = [str(frame.columns[i]) for i in wrong]
            got = ", ".join(str(dtypes[i]) for i in wrong)
            self._wrong_types(labels, [self.families[i] or "" for i in wrong], got)
        return frame

    def _reordered(self, frame: Any) -> Any:
        assert self.names is not None
        present = {str(name): name for name in frame.columns}
        missing = [name for name in self.names if name not in present]
        extra = sorted(set(present).difference(self.names))
        if missing or extra:
            problems = [f"lack {_listed(missing)}"] if missing else []
            problems += [f"have unexpected {_listed(extra)}"] if extra else []
            raise InvalidInputError(
                f"inputs for {self.ref} {' and '.join(problems)}; send exactly the columns "
                f"{_listed(list(self.names))}."
            )
        return frame[[present[name] for name in self.names]]

    def _wrong_types(self, labels: list[str], families: list[str], got: str) -> None:
        expected = ", ".join(
            f"{label} ({family})" for label, family in zip(labels, families, strict=True)
        )
        raise InvalidInputError(
            f"inputs for {self.ref} have the wrong type in {expected}: got {got}; convert them "
            "to the types the signature names (client.get_version(...).signature)."
        )


def signature_check(ref: str, signature: Mapping[str, Any] | None) -> SignatureCheck | None:
    """The check for a version's signature; None when it names no inputs."""
    inputs = (signature or {}).get("inputs")
    if not isinstance(inputs, list) or not inputs:
        return None
    return SignatureCheck(ref, [column if isinstance(column, Mapping) else {} for column in inputs])


def _family(arrow_type: Any) -> str | None:
    """``number``, ``bool``, ``text`` or ``time`` for an Arrow type name; None: unchecked."""
    if not isinstance(arrow_type, str):
        return None
    name = arrow_type.lower()
    if name == "bool":
        return "bool"
    if name.startswith(("int", "uint", "float", "double", "halffloat", "decimal")):
        return "number"
    if name in ("string", "large_string", "utf8", "large_utf8"):
        return "text"
    if name.startswith(("timestamp", "date")):
        return "time"
    return None


def _array_column_fits(array: np.ndarray, index: int, family: str) -> bool:
    """Whether column ``index`` of an array holds what ``family`` needs (objects and text are
    looked at value by value: JSON rows with one string in them arrive as a text array)."""
    if array.dtype.kind in _FAMILIES[family]:
        return True
    if family not in ("number", "bool") or array.dtype.kind not in "OUS":
        return False
    column = array.reshape(len(array), -1)[:, index]
    try:
        column.astype(np.float64)
    except (TypeError, ValueError):
        return False
    return array.dtype.kind == "O" or family == "number"


def _frame_column_fits(frame: Any, index: int, dtype: Any, family: str) -> bool:
    """NumPy dtypes by kind; objects, categories and pandas' own dtypes by the values held
    (only those columns are read: taking a column out of a DataFrame costs microseconds)."""
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        return dtype.kind in _FAMILIES[family]
    import pandas as pd

    return pd.api.types.infer_dtype(frame.iloc[:, index], skipna=True) in _VALUES[family]


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    more = len(names) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")
