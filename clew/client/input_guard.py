"""Input guards: notice that a caller changed an input array between ``predict`` and capture.

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

import numpy as np

from clew.domain.captures import InputGuard

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
