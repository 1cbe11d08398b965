"""Serving deployments as values: which version answered which endpoint, from when to when.

A deployment is one ``clew serve`` process answering an endpoint (a name users choose, by
default the model's) with one version, as the champion or as a shadow of a champion. Its start
and stop times make "which version answered endpoint E at time T" one query.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from clew.domain.monitor_windows import parse_time
from clew.domain.records import ms_to_iso
from clew.errors import InvalidInputError

ROLES = ("champion", "shadow")
_ENDPOINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
COLUMNS = (
    "endpoint",
    "role",
    "model",
    "version",
    "digest",
    "started_at",
    "stopped_at",
    "address",
    "started_by",
    "id",
    "champion_id",
    "run_id",
)


def check_endpoint(name: Any) -> str:
    """An endpoint name: letters, digits, ``_ . -``, at most 100 characters."""
    if not isinstance(name, str) or not _ENDPOINT.match(name):
        raise InvalidInputError(
            f"endpoint {name!r} is not a valid name; use letters, digits, '_', '.' or '-' "
            "(at most 100 characters), e.g. churn-api."
        )
    return name


def check_role(role: Any) -> str:
    if role not in ROLES:
        raise InvalidInputError(f"role {role!r} is not one of {', '.join(ROLES)}.")
    return str(role)


def time_ms(at: dt.datetime | str | int | None, now_ms: int) -> int:
    """``at`` as epoch milliseconds: a datetime (naive means UTC), an ISO 8601 text, epoch
    milliseconds, or None for now."""
    if at is None:
        return now_ms
    if isinstance(at, dt.datetime):
        moment = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(at, str):
        return parse_time(at)
    if isinstance(at, int) and not isinstance(at, bool) and at >= 0:
        return at
    raise InvalidInputError(
        f"at {at!r} is not a time; pass a datetime, an ISO 8601 text such as "
        "2026-12-07T10:00:00Z, or epoch milliseconds."
    )


@dataclass(frozen=True)
class Deployment:
    """One serving process's answering of ``endpoint`` with ``model/version``."""

    id: str
    endpoint: str
    role: str
    model: str
    version: int
    version_id: str
    digest: str
    champion_id: str | None
    run_id: str | None
    address: str
    started_ms: int
    started_by: str
    stopped_ms: int | None
    stopped_by: str | None

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"

    def active_at(self, at_ms: int) -> bool:
        return self.started_ms <= at_ms and (self.stopped_ms is None or at_ms < self.stopped_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "role": self.role,
            "model": self.model,
            "version": self.version,
            "ref": self.ref,
            "version_id": self.version_id,
            "digest": self.digest,
            "champion_id": self.champion_id,
            "run_id": self.run_id,
            "address": self.address,
            "started_at": ms_to_iso(self.started_ms),
            "started_by": self.started_by,
            "stopped_at": ms_to_iso(self.stopped_ms),
            "stopped_by": self.stopped_by,
        }

    def to_wire(self) -> dict[str, Any]:
        """``to_dict`` with the times as milliseconds, for the remote client."""
        return {**self.to_dict(), "started_ms": self.started_ms, "stopped_ms": self.stopped_ms}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Deployment:
        return cls(
            id=data["id"],
            endpoint=data["endpoint"],
            role=data["role"],
            model=data["model"],
            version=data["version"],
            version_id=data["version_id"],
            digest=data["digest"],
            champion_id=data["champion_id"],
            run_id=data["run_id"],
            address=data["address"],
            started_ms=data["started_ms"],
            started_by=data["started_by"],
            stopped_ms=data["stopped_ms"],
            stopped_by=data["stopped_by"],
        )


class DeploymentList(list[Deployment]):
    """DeploymentList as a list that converts to pandas (``to_pandas``) and plain dicts."""

    def to_pandas(self) -> Any:
        import pandas as pd

        rows = []
        for deployment in self:
            row = deployment.to_dict()
            rows.append({column: row[column] for column in COLUMNS if column != "model"})
            rows[-1]["model"] = deployment.ref
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def to_dicts(self) -> list[dict[str, Any]]:
        return [deployment.to_dict() for deployment in self]


@dataclass(frozen=True)
class ShadowPair:
    """Row ``i`` of ``champion_call`` and of ``shadow_call`` answered the same input."""

    champion_call: str
    shadow_call: str
    rows: int
    request_id: str
    time_ms: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "champion_call": self.champion_call,
            "shadow_call": self.shadow_call,
            "rows": self.rows,
            "request_id": self.request_id,
            "time_ms": self.time_ms,
        }


@dataclass(frozen=True)
class ShadowReport:
    """How a shadow compared with its champion on the same requests.

    ``compared`` counts rows both captured; ``agreement`` is the share of those with equal
    outputs; the quality figures (``domain/quality.py``'s) use the labels that arrived for
    the champion's predictions, applied to both.
    """

    endpoint: str
    champion: str
    shadow: str
    deployment_id: str
    requests: int
    paired_rows: int
    compared: int
    agreed: int
    labelled: int
    champion_quality: dict[str, Any]
    shadow_quality: dict[str, Any]

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "champion": self.champion,
            "shadow": self.shadow,
            "deployment_id": self.deployment_id,
            "requests": self.requests,
            "paired_rows": self.paired_rows,
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement": self.agreement,
            "labelled": self.labelled,
            "champion_quality": self.champion_quality,
            "shadow_quality": self.shadow_quality,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShadowReport:
        fields = {key: value for key, value in data.items() if key != "agreement"}
        return cls(**fields)

    def to_pandas(self) -> Any:
        """Champion and shadow side by side: one row per figure."""
        import pandas as pd

        keys = sorted(set(self.champion_quality) | set(self.shadow_quality))
        rows = [{"figure": "agreement", "champion": self.agreement, "shadow": self.agreement}]
        rows += [
            {
                "figure": key,
                "champion": self.champion_quality.get(key),
                "shadow": self.shadow_quality.get(key),
            }
            for key in keys
        ]
        return pd.DataFrame(rows, columns=["figure", "champion", "shadow"])
