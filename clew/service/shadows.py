"""Shadow deployments: which champion call each shadow call answered, and how they compare.

``clew serve --shadow`` records a pair per request (the champion's call id, the shadow's, the
row count and the request id). The report reads both versions' captured outputs over the
shadow's lifetime, pairs row ``i`` of each champion call with row ``i`` of its shadow call,
and gives their agreement; once labels arrive for the champion's predictions
(``clew.log_labels``), both versions' quality is computed on those rows by the same code as
model monitoring (``service/model_quality.py``, ``domain/quality.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import select

from clew.domain import ids
from clew.domain.deployments import Deployment, ShadowPair, ShadowReport
from clew.domain.monitoring import Window
from clew.domain.quality import LabelledWindow, QualitySpec, evaluate
from clew.errors import InvalidInputError
from clew.service import audit, ground_truth, model_quality, record_check
from clew.service.deployments import DeploymentService
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

MAX_PAIRS = 10_000
MAX_ROWS = 100_000


class ShadowService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record_pairs(self, deployment_id: str, pairs: Sequence[ShadowPair], actor: str) -> int:
        """Store which champion call each of a shadow deployment's calls answered; a pair
        already stored (a retried post) is not stored twice. Returns the pairs stored now.

        Pairs are governance facts: the report a promotion of the challenger rests on is
        computed from them, so each is imaged in the audit chain like a deployment, and an
        edited, inserted or deleted pair is found (``clew audit verify``, and the report).
        """
        shadow = _shadow(self.store, deployment_id)
        if len(pairs) > MAX_PAIRS:
            raise InvalidInputError(f"{len(pairs)} pairs is more than {MAX_PAIRS}; send fewer.")
        rows = {row["shadow_call"]: row for row in (_pair_row(shadow.id, p) for p in pairs)}
        if not rows:
            return 0
        table = schema.shadow_pairs
        with self.store.db.write() as connection:
            stored = connection.execute(
                select(table.c.shadow_call).where(
                    table.c.deployment_id == shadow.id, table.c.shadow_call.in_(list(rows))
                )
            ).scalars()
            for call in stored:
                rows.pop(call, None)
            if rows:
                connection.execute(table.insert(), list(rows.values()))
                audit.stage_many(connection, table, rows.values())
                audit.append(
                    connection,
                    actor,
                    "shadow.pairs",
                    f"endpoint:{shadow.endpoint}",
                    {"deployment": shadow.id, "pairs": len(rows)},
                )
        return len(rows)

    def report(self, deployment_id: str, spec: QualitySpec | None = None) -> ShadowReport:
        """Agreement and quality of a shadow deployment beside its champion's."""
        shadow = _shadow(self.store, deployment_id)
        assert shadow.champion_id is not None
        champion = DeploymentService(self.store).get(shadow.champion_id)
        pairs = self._pairs(shadow.id)
        end = (shadow.stopped_ms or now_ms()) + 60_000  # a call captured just after the stop
        theirs = _outputs(self.store, champion, shadow.started_ms, end)
        ours = _outputs(self.store, shadow, shadow.started_ms, end)
        paired = [(f"{c}.{i}", f"{s}.{i}") for c, s, rows in pairs for i in range(rows)]
        compared = [(c, s) for c, s in paired if c in theirs and s in ours]
        agreed = sum(theirs[c] == ours[s] for c, s in compared)
        labels = ground_truth.labels_for(self.store, [c for c, _ in compared])
        labelled = [(c, s) for c, s in compared if c in labels]
        spec = spec or QualitySpec()
        truth = [labels[c] for c, _ in labelled]
        return ShadowReport(
            endpoint=shadow.endpoint,
            champion=champion.ref,
            shadow=shadow.ref,
            deployment_id=shadow.id,
            requests=len(pairs),
            paired_rows=len(paired),
            compared=len(compared),
            agreed=agreed,
            labelled=len(labelled),
            champion_quality=_quality(champion, [theirs[c] for c, _ in labelled], truth, spec),
            shadow_quality=_quality(shadow, [ours[s] for _, s in labelled], truth, spec),
        )

    def _pairs(self, deployment_id: str) -> list[tuple[str, str, int]]:
        """The deployment's pairs in the order stored, once each matches its audited image."""
        table = schema.shadow_pairs
        with self.store.db.read() as connection:
            rows = connection.execute(
                select(table.c.champion_call, table.c.shadow_call, table.c.rows)
                .where(table.c.deployment_id == deployment_id)
                .order_by(table.c.id)
            ).all()
            keys = [{"deployment_id": deployment_id, "shadow_call": row[1]} for row in rows]
            record_check.require_vouched(
                connection, "shadow_pairs", keys, f"shadow deployment {deployment_id}'s pairs"
            )
        return [(str(c), str(s), int(n)) for c, s, n in rows]


def _shadow(store: Store, deployment_id: str) -> Deployment:
    deployment = DeploymentService(store).get(deployment_id)
    if deployment.role != "shadow":
        raise InvalidInputError(
            f"deployment {deployment_id} serves {deployment.ref} as the champion of "
            f"{deployment.endpoint}; name a shadow deployment (clew status lists them)."
        )
    return deployment


def _pair_row(deployment_id: str, pair: ShadowPair) -> dict[str, Any]:
    calls = (pair.champion_call, pair.shadow_call)
    if not all(isinstance(call, str) and ids.is_id(call) for call in calls):
        raise InvalidInputError(f"a shadow pair names calls {calls!r}; both must be call ids.")
    if not isinstance(pair.rows, int) or not 1 <= pair.rows <= MAX_ROWS:
        raise InvalidInputError(f"a shadow pair's rows must be from 1 to {MAX_ROWS}.")
    if not isinstance(pair.request_id, str) or len(pair.request_id) > 200:
        raise InvalidInputError(
            "a shadow pair's request id must be text of at most 200 characters."
        )
    return {"deployment_id": deployment_id, **pair.to_wire()}


def _outputs(store: Store, deployment: Deployment, start_ms: int, end_ms: int) -> dict[str, str]:
    """Each captured prediction id of the deployment's version in the range, to its output
    (as JSON text, so outputs of any type compare)."""
    window = Window(deployment.model, deployment.version, start_ms, end_ms)
    rows = model_quality.window_rows(store, window, deployment.version_id)
    if rows.num_rows == 0:
        return {}
    return dict(
        zip(
            rows.column("prediction_id").to_pylist(),
            rows.column("output").to_pylist(),
            strict=True,
        )
    )


def _quality(
    deployment: Deployment,
    outputs: list[str],
    truth: list[Any],
    spec: QualitySpec,
) -> dict[str, Any]:
    """The version's quality figures on the labelled rows (scalars only)."""
    if not truth:
        return {}
    table = pa.table(
        {"output": pa.array(outputs, pa.string()), "method": pa.array(["predict"] * len(outputs))}
    )
    predicted, proba, has_proba = model_quality._predictions(table)
    window = Window(deployment.model, deployment.version, 0, 2**62)
    data = LabelledWindow(
        window=window,
        rows=len(outputs),
        truth=truth,
        predicted=predicted,
        proba=proba,
        has_proba=has_proba if has_proba is not None else np.zeros(len(outputs), dtype=bool),
    )
    figures = evaluate(data, spec, {}).metrics
    return {
        key: value
        for key, value in figures.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
