"""Prediction capture and tracing methods of ``Client``: trace, labels, verification.

``PredictionsMixin`` is mixed into ``Client``; the module functions below call the default
client and are re-exported by ``clew``.
"""

from __future__ import annotations

__all__: list[str] = []


class PredictionsMixin:
    """Signed prediction capture, ground-truth labels and ``trace`` (see docs/trace.md)."""
