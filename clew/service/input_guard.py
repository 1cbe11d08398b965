"""Input guards: notice that a caller changed an input array between ``predict`` and capture.

By default ``predict`` queues a large input array itself rather than a copy: copying 800 kB
costs 20-70 µs, more than a fast model's whole 5% budget, while a guard costs about 2 µs.
A guard keeps the array's shape and a sample of its elements (``SAMPLES`` of them, at an even
stride from a random offset); the writer thread compares them again before it writes the call.
A caller who refills the same buffer for its next batch, or normalises an array in place
after predicting, changes sampled elements and is caught; an edit of a few elements can slip
between the samples, which is why ``LoadedModel(copy_inputs=True)`` copies instead.

A guard is a plain tuple ``(shape, positions, sampled elements)``: one is made on every predict
call. Elements are compared as bytes, so a NaN that stays NaN is unchanged.
"""

from __future__ import annotations

import random

import numpy as np

SAMPLES = 256
MIN_BYTES = 64 * 1024  # smaller arrays are copied: a copy that cheap is exact
_CACHED_SIZES = 64

InputGuard = tuple[tuple[int, ...], np.ndarray, np.ndarray]
_positions: dict[int, np.ndarray] = {}


def guard(array: np.ndarray) -> InputGuard:
    """The guard of an array (of ``MIN_BYTES`` or more, not of objects) as it is now."""
    positions = _positions.get(array.size)
    if positions is None:
        positions = _sample_positions(array.size)
    return array.shape, positions, array.take(positions)


def unchanged(guard: InputGuard, array: np.ndarray) -> bool:
    """Whether ``array`` still has the shape and sampled elements it had when guarded."""
    shape, positions, sample = guard
    return array.shape == shape and array.take(positions).tobytes() == sample.tobytes()


def _sample_positions(size: int) -> np.ndarray:
    """``SAMPLES`` flat positions at an even stride from a random offset, kept per array size
    (choosing them costs more than sampling)."""
    step = max(1, size // SAMPLES)
    positions = np.arange(random.randrange(step), size, step, dtype=np.intp)
    if len(_positions) >= _CACHED_SIZES:
        _positions.clear()
    _positions[size] = positions
    return positions
