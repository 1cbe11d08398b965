"""A run's params, metrics and tags as values: which keys and values are allowed, how a param is
stored as text, and how unknown keys in a search filter reach the caller.

Both backends check the same way before anything is sent or stored: a JSON body would
otherwise turn a key ``3`` into ``"3"`` on its way to a server.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

from clew.errors import InvalidInputError, UnknownKeyWarning

MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000


def check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or "\x00" in key:
        raise InvalidInputError(
            f"{what} name {key!r} is not allowed; use a non-empty string of at most "
            f"{MAX_KEY_LENGTH} characters."
        )
    return key


def check_metric_value(key: str, value: Any) -> float:
    """Numbers (NaN and ±inf included) pass; anything else is refused at the call site."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            import numpy

            if isinstance(value, numpy.integer | numpy.floating):
                return float(value)
        except ImportError:  # pragma: no cover - numpy ships with clew
            pass
        raise InvalidInputError(
            f"metric {key!r} got {value!r} ({type(value).__name__}); metrics must be numbers — "
            "log text as a param or tag instead."
        )
    try:
        return float(value)
    except OverflowError as error:
        raise InvalidInputError(
            f"metric {key!r} got {value!r}, which is too large for a float; log a smaller number."
        ) from error


def check_step(key: str, value: Any, what: str = "step") -> int:
    """Steps and timestamps are integers (numpy integers too); anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy

            if isinstance(value, numpy.integer):
                return int(value)
        except ImportError:  # pragma: no cover - numpy ships with clew
            pass
        raise InvalidInputError(
            f"metric {key!r} got {what} {value!r} ({type(value).__name__}); a {what} must be "
            "an integer."
        )
    return value


def param_text(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > MAX_PARAM_LENGTH:
        raise InvalidInputError(
            f"param {key!r} is {len(text)} characters; the limit is {MAX_PARAM_LENGTH}, so log "
            "large values as an artifact."
        )
    return text


WARNINGS_HEADER = "Clew-Warnings"  # how the server hands these sentences to a remote SDK
NEXT_PAGE_HEADER = "Clew-Next-Page-Token"  # a run search's next page token, when there is one


def warn_unknown_keys(messages: Sequence[str]) -> None:
    """Each message as an ``UnknownKeyWarning``, pointed at the caller of ``search_runs``."""
    for message in messages:
        warnings.warn(UnknownKeyWarning(message), stacklevel=4)
