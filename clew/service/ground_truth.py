"""Ground-truth labels for captured predictions: attached, corrected and read back by id.

A label is stored per prediction id (a later one replaces an earlier one, each write audited),
and only for predictions this store captured, so monitoring can join labels to predictions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select

from clew.errors import InvalidInputError, NotFoundError
from clew.service import audit
from clew.store import schema
from clew.store.location import Store


def log_labels(
    store: Store, prediction_ids: Sequence[str], labels: Sequence[Any], actor: str
) -> int:
    """Attach (or correct) ground truth for captured predictions; returns how many."""
    from clew.service.capture_lookup import normalize_id  # pyarrow: only when labels are used

    wanted = [normalize_id(pid) for pid in prediction_ids]
    values = list(labels)
    if len(wanted) != len(values):
        raise InvalidInputError(
            f"got {len(wanted)} prediction ids but {len(values)} labels; pass one label per id."
        )
    _require_captured(store, wanted)
    now = time.time_ns() // 1_000_000
    encoded = [_label_text(value) for value in values]
    rows = [
        {"prediction_id": pid, "label": text, "time_ms": now, "actor": actor}
        for pid, text in zip(wanted, encoded, strict=True)
    ]
    table = schema.labels
    with store.db.write() as connection:
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            connection.execute(
                delete(table).where(table.c.prediction_id.in_([r["prediction_id"] for r in chunk]))
            )
            connection.execute(table.insert(), chunk)
        audit.append(
            connection,
            actor,
            "labels.log",
            f"prediction:{wanted[0]}" if len(wanted) == 1 else f"labels:{len(wanted)}",
            {"predictions": wanted, "labels": encoded},
        )
    return len(rows)


def _label_text(value: Any) -> str:
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    return json.dumps(value, sort_keys=True, default=str)


def _require_captured(store: Store, wanted: Sequence[str]) -> None:
    from clew.domain import leaves
    from clew.service.capture_lookup import candidate_batches

    by_call: dict[str, set[str]] = {}
    for pid in wanted:
        by_call.setdefault(pid[: leaves.CALL_LENGTH], set()).add(pid)
    seen_files: dict[str, set[str]] = {}
    for call, pids in by_call.items():
        found: set[str] = set()
        for batch in candidate_batches(store, call):
            if batch.path not in seen_files:
                seen_files[batch.path] = set(store.capture_files.read_ids(batch.path).to_pylist())
            found |= pids & seen_files[batch.path]
        missing = sorted(pids - found)
        if missing:
            raise NotFoundError(
                f"prediction {missing[0]} was not captured in this store; label only ids "
                "returned by predict_with_ids (flush captures first if they are recent)."
            )


def labels_for(store: Store, prediction_ids: Sequence[str]) -> dict[str, Any]:
    from clew.service.capture_lookup import normalize_id  # pyarrow: only when labels are used

    wanted = [normalize_id(pid) for pid in prediction_ids]
    table = schema.labels
    found: dict[str, Any] = {}
    with store.db.read() as connection:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for row in connection.execute(
                select(table.c.prediction_id, table.c.label).where(table.c.prediction_id.in_(chunk))
            ):
                found[row.prediction_id] = json.loads(row.label)
    return found
