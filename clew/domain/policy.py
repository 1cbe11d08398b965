"""The governance policy as a value: its parsed rules and the stored document they came from.

Parsing is strict (an unknown key is an error, not a silently weaker policy) and needs no
store, so a remote client parses a server's policy into the same ``StoredPolicy`` an embedded
store returns; storing, versioning and enforcing it is ``service/policy.py``'s job.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clew.domain import digests, records
from clew.domain.roles import Role
from clew.errors import PolicyError, PolicySyntaxError

# The account roles (clew.domain.roles.Role) are role names every policy knows: one named
# in a role list but not defined in ``roles`` means "an account with at least that role".
ACCOUNT_ROLES = frozenset(role.label for role in Role)


DEFAULT_DOCUMENT = """\
# clew's default policy, in force until `clew.set_policy(...)` stores one.
roles: {}
approvals:
  required: 1
  separation_of_duties: true
production:
  aliases: [production]
"""


_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


_METRIC_RULE = re.compile(
    r"^\s*(?:metrics\.)?(?P<metric>[A-Za-z0-9_.\-/]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<threshold>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


_SECTIONS: dict[str, frozenset[str]] = {
    "roles": frozenset(),
    "approvals": frozenset(
        {"roles", "required", "separation_of_duties", "require_registered_keys"}
    ),
    "production": frozenset({"aliases", "roles", "evidence"}),
    "policy": frozenset({"roles"}),
    "aliases": frozenset(),  # a list: the aliases promote may create without new_alias
    "monitoring": frozenset({"on_violation", "risk_tiers", "models"}),
    "reviews": frozenset(),  # risk tier -> review cadence: clew.domain.findings.review_cadence
}

# What a monitoring violation does to the version it was found on (``monitoring`` section):
# ``warn`` records it; ``revalidate`` marks the version "needs revalidation"; ``block`` also
# refuses promotion until it is resolved or approved again; ``reapprove`` refuses promotion
# until a fresh approval (resolving alone does not lift it).
VIOLATION_ACTIONS = ("warn", "revalidate", "block", "reapprove")


_EVIDENCE_KEYS = frozenset({"metrics", "reports", "bias", "explanation"})
_BIAS_KEYS = frozenset({"attributes", "disparate_impact", "risk_tiers"})
_EXPLANATION_KEYS = frozenset({"scope", "risk_tiers"})
EXPLANATION_SCOPES = ("global",)


@dataclass(frozen=True)
class BiasEvidence:
    """``production.evidence.bias``: a bias report on each of ``attributes`` whose disparate
    impact (lowest group selection rate over the highest) is at least ``min_disparate_impact``,
    for models of ``risk_tiers`` (None: every model). Checked at approval and promotion."""

    attributes: tuple[str, ...]
    min_disparate_impact: float | None
    risk_tiers: frozenset[str] | None

    def applies_to(self, risk_tier: str | None) -> bool:
        return self.risk_tiers is None or risk_tier in self.risk_tiers

    def to_dict(self) -> dict[str, Any]:
        return {
            "attributes": list(self.attributes),
            "disparate_impact": self.min_disparate_impact,
            "risk_tiers": sorted(self.risk_tiers) if self.risk_tiers is not None else None,
        }


@dataclass(frozen=True)
class ExplanationEvidence:
    """``production.evidence.explanation``: an explanation report of ``scope`` (global) for
    models of ``risk_tiers`` (None: every model). Checked at approval and promotion."""

    scope: str
    risk_tiers: frozenset[str] | None

    def applies_to(self, risk_tier: str | None) -> bool:
        return self.risk_tiers is None or risk_tier in self.risk_tiers

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "risk_tiers": sorted(self.risk_tiers) if self.risk_tiers is not None else None,
        }


@dataclass(frozen=True)
class MetricRule:
    """One threshold such as ``auc >= 0.8``, checked against a version's metrics snapshot."""

    metric: str
    op: str
    threshold: float

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def failure(self, metrics: Mapping[str, Any]) -> str | None:
        """Why ``metrics`` do not satisfy this rule, or None when they do."""
        value = metrics.get(self.metric)
        if value is None or not isinstance(value, int | float) or math.isnan(value):
            return (
                f"metric {self.metric!r} is missing from the version's metrics (needs {self.text})"
            )
        if not _OPERATORS[self.op](float(value), self.threshold):
            return f"metric {self.metric} = {value:g} does not satisfy {self.text}"
        return None


@dataclass(frozen=True)
class Policy:
    """A parsed, validated policy. Role lists of ``None`` mean "anyone"."""

    roles: Mapping[str, frozenset[str]]
    approver_roles: tuple[str, ...] | None
    required_approvals: int
    separation_of_duties: bool
    production_aliases: frozenset[str]
    promoter_roles: tuple[str, ...] | None
    metric_rules: tuple[MetricRule, ...]
    required_reports: tuple[str, ...]
    admin_roles: tuple[str, ...] | None
    # Decisions must be signed with a key registered to their actor (clew.service.user_keys).
    require_registered_keys: bool = False
    known_aliases: frozenset[str] = frozenset()  # besides production's, need no new_alias
    # What a monitoring violation does (VIOLATION_ACTIONS): by model name, else by the model's
    # risk tier, else ``violation_action``.
    violation_action: str = "warn"
    tier_actions: Mapping[str, str] = field(default_factory=dict)
    model_actions: Mapping[str, str] = field(default_factory=dict)
    # Reports a version needs before approval and promotion (clew/service/bias.py checks them).
    bias_evidence: BiasEvidence | None = None
    explanation_evidence: ExplanationEvidence | None = None

    def action_for(self, model: str, risk_tier: str | None) -> str:
        """What a violation on a version of ``model`` does under this policy."""
        if model in self.model_actions:
            return self.model_actions[model]
        if risk_tier is not None and risk_tier in self.tier_actions:
            return self.tier_actions[risk_tier]
        return self.violation_action

    def allows(
        self, actor: str, roles: tuple[str, ...] | None, account: Role | None = None
    ) -> bool:
        """Whether ``actor`` is in one of ``roles``: a role this policy defines by its members,
        an account role it does not define (``approver``) by ``account``, the actor's account
        role on the model in question."""
        return roles is None or any(self._holds(actor, role, account) for role in roles)

    def _holds(self, actor: str, role: str, account: Role | None) -> bool:
        if role in self.roles:
            return actor in self.roles[role]
        return account is not None and role in ACCOUNT_ROLES and account >= Role.parse(role)

    def roles_of(self, actor: str) -> list[str]:
        return sorted(role for role, members in self.roles.items() if actor in members)

    def is_production(self, alias: str) -> bool:
        return alias in self.production_aliases

    def require_role(
        self,
        actor: str,
        roles: tuple[str, ...] | None,
        action: str,
        account: Role | None = None,
    ) -> None:
        if not self.allows(actor, roles, account):
            raise PolicyError(
                f"{actor!r} may not {action}: the policy allows only the role(s) "
                f"{', '.join(roles or ())}; ask a member or have an admin add {actor!r} to one."
            )

    def _report_evidence(self) -> dict[str, Any]:
        """The ``bias`` and ``explanation`` requirements, present only when the policy sets them."""
        found: dict[str, Any] = {}
        if self.bias_evidence is not None:
            found["bias"] = self.bias_evidence.to_dict()
        if self.explanation_evidence is not None:
            found["explanation"] = self.explanation_evidence.to_dict()
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "roles": {role: sorted(members) for role, members in sorted(self.roles.items())},
            "approvals": {
                "roles": list(self.approver_roles) if self.approver_roles is not None else None,
                "required": self.required_approvals,
                "separation_of_duties": self.separation_of_duties,
                "require_registered_keys": self.require_registered_keys,
            },
            "production": {
                "aliases": sorted(self.production_aliases),
                "roles": list(self.promoter_roles) if self.promoter_roles is not None else None,
                "evidence": {
                    "metrics": [rule.text for rule in self.metric_rules],
                    "reports": list(self.required_reports),
                    **self._report_evidence(),
                },
            },
            "policy": {"roles": list(self.admin_roles) if self.admin_roles is not None else None},
            "aliases": sorted(self.known_aliases),
            "monitoring": {
                "on_violation": self.violation_action,
                "risk_tiers": dict(sorted(self.tier_actions.items())),
                "models": dict(sorted(self.model_actions.items())),
            },
        }


@dataclass(frozen=True)
class StoredPolicy:
    """The policy in force and where it came from (version 0 is the built-in default)."""

    version: int
    digest: str
    document: str
    created_ms: int | None
    created_by: str | None
    rules: Policy

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "default": self.version == 0,
            "digest": self.digest,
            "set_by": self.created_by,
            "set_at": records.ms_to_iso(self.created_ms),
            "document": self.document,
            "rules": self.rules.to_dict(),
        }


@functools.lru_cache(maxsize=32)
def parse(document: str) -> Policy:
    """Parse and validate a policy document, or raise PolicySyntaxError naming the problem."""
    import yaml  # only when a policy is read: ~10 ms a connect does not need

    try:
        data = yaml.safe_load(document)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "it could not be parsed"
        raise syntax_error(f"the policy is not valid YAML{where} ({problem})") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise syntax_error(
            "the policy must be a YAML mapping with sections "
            f"{', '.join(_SECTIONS)} (if you meant a file, check that the path exists)"
        )
    _reject_unknown(data, frozenset(_SECTIONS), "the policy")
    roles = _roles(data.get("roles"))
    approvals = _section(data, "approvals")
    production = _section(data, "production")
    evidence = _mapping(production.get("evidence"), "production.evidence")
    _reject_unknown(evidence, _EVIDENCE_KEYS, "production.evidence")
    return Policy(
        roles=roles,
        approver_roles=_role_list(approvals.get("roles"), "approvals.roles", roles),
        required_approvals=_required(approvals.get("required", 1)),
        separation_of_duties=_flag(
            approvals.get("separation_of_duties", True), "approvals.separation_of_duties"
        ),
        production_aliases=frozenset(
            _names(production.get("aliases", ["production"]), "production.aliases")
        ),
        promoter_roles=_role_list(production.get("roles"), "production.roles", roles),
        metric_rules=tuple(
            _metric_rule(text) for text in _names(evidence.get("metrics", []), "metrics")
        ),
        required_reports=tuple(_names(evidence.get("reports", []), "production.evidence.reports")),
        admin_roles=_role_list(_section(data, "policy").get("roles"), "policy.roles", roles),
        require_registered_keys=_flag(
            approvals.get("require_registered_keys", False), "approvals.require_registered_keys"
        ),
        known_aliases=frozenset(_names(data.get("aliases", []), "aliases")),
        **_monitoring(_section(data, "monitoring")),
        **_report_evidence(evidence),
    )


def _report_evidence(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The ``bias`` and ``explanation`` requirements of ``production.evidence``."""
    found: dict[str, Any] = {}
    if evidence.get("bias") is not None:
        bias = _mapping(evidence["bias"], "production.evidence.bias")
        _reject_unknown(bias, _BIAS_KEYS, "production.evidence.bias")
        attributes = _names(bias.get("attributes"), "production.evidence.bias.attributes")
        found["bias_evidence"] = BiasEvidence(
            tuple(attributes),
            _ratio(bias.get("disparate_impact")),
            _tiers(bias.get("risk_tiers"), "production.evidence.bias.risk_tiers"),
        )
    if evidence.get("explanation") is not None:
        explanation = evidence["explanation"]
        if isinstance(explanation, str):
            explanation = {"scope": explanation}
        explanation = _mapping(explanation, "production.evidence.explanation")
        _reject_unknown(explanation, _EXPLANATION_KEYS, "production.evidence.explanation")
        scope = explanation.get("scope", "global")
        if scope not in EXPLANATION_SCOPES:
            raise syntax_error(
                f"production.evidence.explanation.scope is {scope!r}; use "
                f"{', '.join(EXPLANATION_SCOPES)}"
            )
        found["explanation_evidence"] = ExplanationEvidence(
            str(scope),
            _tiers(explanation.get("risk_tiers"), "production.evidence.explanation.risk_tiers"),
        )
    return found


def _ratio(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise syntax_error(
            "production.evidence.bias.disparate_impact must be a number above 0 and at most 1 "
            f"(the lowest ratio allowed, e.g. 0.8; got {value!r})"
        )
    return float(value)


def _tiers(value: Any, where: str) -> frozenset[str] | None:
    return None if value is None else frozenset(_names(value, where))


def _monitoring(section: Mapping[str, Any]) -> dict[str, Any]:
    """The ``monitoring`` section: a default action and actions per risk tier and per model."""
    return {
        "violation_action": _action(section.get("on_violation", "warn"), "on_violation"),
        "tier_actions": _actions(section.get("risk_tiers"), "monitoring.risk_tiers"),
        "model_actions": _actions(section.get("models"), "monitoring.models"),
    }


def _actions(value: Any, where: str) -> dict[str, str]:
    return {
        str(name): _action(action, f"{where}.{name}")
        for name, action in _mapping(value, where).items()
    }


def _action(value: Any, where: str) -> str:
    if value not in VIOLATION_ACTIONS:
        raise syntax_error(
            f"monitoring {where} is {value!r}; use one of {', '.join(VIOLATION_ACTIONS)}"
        )
    return str(value)


def syntax_error(problem: str) -> PolicySyntaxError:
    return PolicySyntaxError(
        f"{problem}; fix the document and set it again (the previous policy stays in force)."
    )


def _reject_unknown(data: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise syntax_error(
            f"{where} has unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise syntax_error(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    section = _mapping(data.get(name), name)
    _reject_unknown(section, _SECTIONS[name], name)
    return section


def _names(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise syntax_error(f"{where} must be a list of names")
    return value


def _roles(value: Any) -> dict[str, frozenset[str]]:
    roles = _mapping(value, "roles")
    parsed: dict[str, frozenset[str]] = {}
    for role, members in roles.items():
        if not isinstance(role, str) or not role:
            raise syntax_error(f"role name {role!r} must be a non-empty string")
        parsed[role] = frozenset(_names(members or [], f"roles.{role}"))
    return parsed


def _role_list(
    value: Any, where: str, roles: Mapping[str, frozenset[str]]
) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = _names(value, where)
    unknown = [name for name in names if name not in roles and name not in ACCOUNT_ROLES]
    if unknown:
        raise syntax_error(
            f"{where} names role(s) {', '.join(unknown)} that the roles section does not define "
            f"and that are not account roles ({', '.join(sorted(ACCOUNT_ROLES))})"
        )
    return tuple(names)


def _required(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise syntax_error(
            f"approvals.required must be a whole number of at least 1 (got {value!r})"
        )
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise syntax_error(f"{where} must be true or false (got {value!r})")
    return value


def _metric_rule(text: str) -> MetricRule:
    match = _METRIC_RULE.match(text)
    if not match:
        raise syntax_error(
            f"metric threshold {text!r} is not of the form '<metric> <op> <number>' "
            "(op: >=, >, <=, <, ==, !=), e.g. 'auc >= 0.8'"
        )
    return MetricRule(match["metric"], match["op"], float(match["threshold"]))


@functools.cache
def default() -> StoredPolicy:
    """The policy in force before anyone stores one; parsed on first use, since parsing
    imports the YAML reader, which opening a store does not need."""
    return StoredPolicy(
        version=0,
        digest=digests.digest_bytes(DEFAULT_DOCUMENT.encode()),
        document=DEFAULT_DOCUMENT,
        created_ms=None,
        created_by=None,
        rules=parse(DEFAULT_DOCUMENT),
    )
