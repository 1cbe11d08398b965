"""The tables saying who may call which route, and the check that keeps them complete.

``RULES`` holds the API's routes by method and path, ``ROUTE_PERMISSIONS`` the web UI's pages
by route name (mapped onto the same roles by ``UI_RULES``). Fail closed: ``check_routes`` runs
when the app is built and refuses to start if any route lacks an entry (or an entry names a
route that no longer exists), and ``rule_for`` refuses a request whose route is not in a table.
Adding an endpoint or a page therefore forces a decision about its permission in this file,
where a reviewer sees every rule at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from clew.domain.roles import Role


@dataclass(frozen=True)
class Rule:
    """``role`` None means public (no token needed); ``model_param`` names the path parameter
    holding a registered model's name, so per-model grants can raise the caller's role;
    ``signing`` routes also need the caller's dedicated signing token (an e-signature)."""

    role: Role | None
    model_param: str | None = None
    signing: bool = False


PUBLIC = Rule(None)
VIEW = Rule(Role.VIEWER)
CONTRIBUTE = Rule(Role.CONTRIBUTOR)
SIGN = Rule(Role.APPROVER, model_param="name", signing=True)

API = "/api/v1"
RULES: dict[tuple[str, str], Rule] = {
    # operations
    ("GET", f"{API}/health"): PUBLIC,
    ("GET", f"{API}/ready"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", f"{API}/openapi.json"): PUBLIC,
    ("GET", "/"): PUBLIC,  # a redirect to /ui/, whose pages have their own rules
    ("GET", f"{API}/whoami"): VIEW,
    # runs
    ("POST", f"{API}/runs"): CONTRIBUTE,
    ("POST", f"{API}/runs/search"): VIEW,
    ("GET", f"{API}/runs/{{run_id}}"): VIEW,
    ("GET", f"{API}/runs/{{run_id}}/metric-history"): VIEW,
    ("POST", f"{API}/runs/{{run_id}}/params"): CONTRIBUTE,
    ("POST", f"{API}/runs/{{run_id}}/tags"): CONTRIBUTE,
    ("POST", f"{API}/runs/{{run_id}}/metrics"): CONTRIBUTE,
    ("POST", f"{API}/runs/{{run_id}}/end"): CONTRIBUTE,
    ("GET", f"{API}/runs/{{run_id}}/artifacts"): VIEW,
    # artifacts and their bytes
    ("POST", f"{API}/artifacts"): CONTRIBUTE,
    ("GET", f"{API}/artifacts"): VIEW,
    ("GET", f"{API}/artifacts/{{artifact_id}}"): VIEW,
    ("PUT", f"{API}/blobs/{{digest}}"): CONTRIBUTE,
    ("GET", f"{API}/blobs/{{digest}}"): VIEW,
    ("GET", f"{API}/blobs/{{digest}}/size"): VIEW,
    # registry (grants on the model named in the path can raise the caller's role)
    ("POST", f"{API}/models"): CONTRIBUTE,
    ("GET", f"{API}/models"): VIEW,
    ("GET", f"{API}/models/{{name}}"): VIEW,
    ("POST", f"{API}/models/{{name}}/versions"): Rule(Role.CONTRIBUTOR, model_param="name"),
    ("GET", f"{API}/models/{{name}}/versions"): VIEW,
    ("GET", f"{API}/resolve"): VIEW,
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/approve"): SIGN,
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/reject"): SIGN,
    ("POST", f"{API}/models/{{name}}/aliases/{{alias}}"): Rule(Role.APPROVER, model_param="name"),
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/revoke"): SIGN,
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/statement"): VIEW,
    ("POST", f"{API}/user-keys"): Rule(Role.ADMIN),
    ("GET", f"{API}/user-keys"): VIEW,
    ("POST", f"{API}/user-keys/{{key_id}}/revoke"): Rule(Role.ADMIN),
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/archive"): Rule(
        Role.APPROVER, model_param="name"
    ),
    ("POST", f"{API}/models/{{name}}/aliases/{{alias}}/rollback"): Rule(
        Role.APPROVER, model_param="name"
    ),
    ("GET", f"{API}/models/{{name}}/history"): VIEW,
    ("GET", f"{API}/models/{{name}}/aliases/{{alias}}/at"): VIEW,
    ("GET", f"{API}/models/{{name}}/versions-overview"): VIEW,
    ("GET", f"{API}/models-overview"): VIEW,
    ("GET", f"{API}/loadable"): VIEW,
    ("GET", f"{API}/version-status"): VIEW,
    ("GET", f"{API}/policy"): VIEW,
    ("POST", f"{API}/policy"): Rule(Role.ADMIN),
    # serving deployments (clew serve records its own start and stop)
    ("POST", f"{API}/deployments"): CONTRIBUTE,
    ("POST", f"{API}/deployments/{{deployment_id}}/stop"): CONTRIBUTE,
    ("GET", f"{API}/deployments/at"): VIEW,
    ("GET", f"{API}/deployments"): VIEW,
    ("GET", f"{API}/deployments/{{deployment_id}}"): VIEW,
    ("POST", f"{API}/shadows/{{deployment_id}}/pairs"): CONTRIBUTE,
    ("POST", f"{API}/shadows/{{deployment_id}}/report"): VIEW,
    # the monitor (routes check the role on the model their body names)
    ("POST", f"{API}/monitor/quality"): VIEW,
    ("POST", f"{API}/monitor/runs"): VIEW,
    ("GET", f"{API}/monitor/runs"): VIEW,
    ("POST", f"{API}/monitor/resolve"): VIEW,
    ("POST", f"{API}/monitor/schedules"): VIEW,
    ("GET", f"{API}/monitor/schedules"): VIEW,
    ("DELETE", f"{API}/monitor/schedules/{{schedule_id}}"): VIEW,
    # captured predictions
    ("GET", f"{API}/predictions/{{prediction_id}}/trace"): VIEW,
    ("POST", f"{API}/labels"): CONTRIBUTE,
    ("POST", f"{API}/labels/search"): VIEW,
    ("GET", f"{API}/public-key"): VIEW,
    ("GET", f"{API}/signing-keys"): VIEW,
    ("POST", f"{API}/signing-keys"): Rule(Role.ADMIN),
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/captures"): Rule(
        Role.CONTRIBUTOR, model_param="name"
    ),
    ("GET", f"{API}/predictions/{{prediction_id}}"): VIEW,
    # monitoring: baselines and checks (reads are views; writes need contributor on the model)
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/baseline"): Rule(
        Role.CONTRIBUTOR, model_param="name"
    ),
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/baseline/import"): Rule(
        Role.CONTRIBUTOR, model_param="name"
    ),
    ("GET", f"{API}/models/{{name}}/versions/{{version}}/baseline"): VIEW,
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/baseline/constraints"): Rule(
        Role.CONTRIBUTOR, model_param="name"
    ),
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/baseline/constraints/import"): Rule(
        Role.CONTRIBUTOR, model_param="name"
    ),
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/checks/{{check}}"): VIEW,
    # reproductions: the plan is a view; a report needs contributor on the model
    ("GET", f"{API}/models/{{name}}/versions/{{version}}/reproduction-plan"): VIEW,
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/reproductions"): Rule(
        Role.CONTRIBUTOR, model_param="name"
    ),
    # bias and explanation reports of a version
    ("GET", f"{API}/models/{{name}}/versions/{{version}}/reports"): VIEW,
    # pipelines: the step cache and executions are views (steps write through /runs)
    ("GET", f"{API}/pipelines/cached-step"): VIEW,
    ("GET", f"{API}/pipelines/{{ref}}"): VIEW,
    # lineage and audit
    ("GET", f"{API}/lineage/{{direction}}"): VIEW,
    ("POST", f"{API}/lineage/ingest"): CONTRIBUTE,
    ("POST", f"{API}/lineage"): CONTRIBUTE,
    ("POST", f"{API}/imports/mlflow/runs"): CONTRIBUTE,
    ("POST", f"{API}/imports/dvc/stages"): CONTRIBUTE,
    ("POST", f"{API}/imports/mlflow/models"): CONTRIBUTE,
    ("GET", f"{API}/lineage/questions/{{question}}"): VIEW,
    ("GET", f"{API}/audit"): VIEW,
    ("GET", f"{API}/audit/verify"): VIEW,
    # web UI sessions
    ("GET", f"{API}/sessions"): Rule(Role.ADMIN),
    ("POST", f"{API}/sessions/{{session_id}}/revoke"): Rule(Role.ADMIN),
    # webhooks: subscriptions, their delivery log, delivering now
    ("POST", f"{API}/webhooks"): Rule(Role.ADMIN),
    ("GET", f"{API}/webhooks"): Rule(Role.ADMIN),
    ("DELETE", f"{API}/webhooks/{{subscription_id}}"): Rule(Role.ADMIN),
    ("GET", f"{API}/webhooks/deliveries"): Rule(Role.ADMIN),
    ("POST", f"{API}/webhooks/deliver"): Rule(Role.ADMIN),
    # validation findings and reviews (writes check the role on the model their body names)
    ("POST", f"{API}/findings"): VIEW,
    ("GET", f"{API}/findings"): VIEW,
    ("GET", f"{API}/findings/{{finding_id}}"): VIEW,
    ("POST", f"{API}/findings/{{finding_id}}"): VIEW,
    ("POST", f"{API}/reviews"): VIEW,
    ("GET", f"{API}/reviews"): VIEW,
    ("POST", f"{API}/reviews/overdue"): CONTRIBUTE,
    ("GET", f"{API}/reviews/{{name}}"): VIEW,
    ("GET", f"{API}/reviews/{{name}}/status"): VIEW,
    ("POST", f"{API}/reviews/{{name}}/due"): VIEW,
    # model cards (edits need contributor on the model)
    ("GET", f"{API}/models/{{name}}/versions/{{version}}/card"): VIEW,
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/card"): Rule(
        Role.CONTRIBUTOR, model_param="name"
    ),
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/card/sagemaker"): Rule(
        Role.CONTRIBUTOR, model_param="name"
    ),
    # regulator exports (reads: the SR 11-7 inventory, a version's signed Annex IV pack)
    ("GET", f"{API}/exports/sr11-7"): VIEW,
    ("POST", f"{API}/models/{{name}}/versions/{{version}}/annex-iv"): Rule(
        Role.VIEWER, model_param="name"
    ),
    # signing the head adds at most one row per new head: auditors (viewers) export
    ("POST", f"{API}/audit/checkpoints"): VIEW,
    ("POST", f"{API}/audit/checkpoints/verify"): VIEW,
}


# The web UI under /ui is the one documented exemption from RULES: its routes are keyed by
# route name in ROUTE_PERMISSIONS (which ``clew ui`` checks too, without a server), whose
# permissions map onto roles in UI_RULES, exactly as the API's equivalent routes. Still fail
# closed: a /ui route missing from that table has no rule, so it is refused and the app will not
# start.
UI_PREFIX = "/ui"
READ, APPROVE, PROMOTE = "read", "approve", "promote"
# Route name -> the permission it needs. Public routes (login, static files) say None.
ROUTE_PERMISSIONS: dict[str, str | None] = {
    "ui.home": READ,
    "ui.static": None,
    "ui.login": None,
    "ui.login_submit": None,
    "ui.logout": None,
    "ui.models": READ,
    "ui.models_csv": READ,
    "ui.version_card": READ,
    "ui.model": READ,
    "ui.version": READ,
    "ui.version_integrity": READ,
    "ui.version_approve": APPROVE,
    "ui.version_promote": PROMOTE,
    "ui.experiments": READ,
    "ui.compare": READ,
    "ui.run": READ,
    "ui.artifact": READ,
    "ui.lineage": READ,
    "ui.lineage_graph": READ,
    "ui.prediction": READ,
    "ui.prediction_graph": READ,
    "ui.audit": READ,
    "ui.audit_verify": READ,
    "ui.monitoring": READ,
}

UI_RULES: dict[str, Rule] = {
    READ: VIEW,
    APPROVE: SIGN,
    PROMOTE: Rule(Role.APPROVER, model_param="name"),
}


def rule_for(method: str, path: str) -> Rule | None:
    return RULES.get((method, path))


def is_ui_path(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def ui_rule(route_name: str | None) -> Rule | None:
    """The rule for a /ui route, from the UI's own table (None: not declared, so refused)."""
    if route_name not in ROUTE_PERMISSIONS:
        return None
    permission = ROUTE_PERMISSIONS[route_name]
    return PUBLIC if permission is None else UI_RULES.get(permission)


def rule_for_route(method: str, route: object) -> Rule | None:
    """The rule a request's matched route falls under (API routes by path, /ui by name)."""
    path = getattr(route, "path", "")
    if is_ui_path(path):
        return ui_rule(getattr(route, "name", None))
    return rule_for(method, path)


def route_keys(app: FastAPI) -> dict[tuple[str, str], bool]:
    """Every (method, path template) the app answers, mapped to whether the route runs the app's
    dependencies (an ``APIRoute`` does; a plain Starlette route such as openapi.json does not).
    HEAD rides along with GET."""
    keys: dict[tuple[str, str], bool] = {}
    for context in iter_route_contexts(app.routes):
        guarded = isinstance(context.original_route, APIRoute)
        if context.path is None or is_ui_path(context.path):
            continue
        for method in context.methods or ():
            if method != "HEAD":
                keys[(method, context.path)] = guarded
    return keys


def ui_problems(app: FastAPI) -> list[str]:
    """The /ui routes that lack a ROUTE_PERMISSIONS entry or bypass ``authorize``."""
    problems = []
    for context in iter_route_contexts(app.routes):
        if context.path is None or not is_ui_path(context.path):
            continue
        route = context.original_route
        rule = ui_rule(getattr(route, "name", None))
        if rule is None or (rule != PUBLIC and not isinstance(route, APIRoute)):
            problems.append(context.path)
    return sorted(problems)


def check_routes(app: FastAPI) -> None:
    """Refuse to build a server whose routes and permission table disagree."""
    served = route_keys(app)
    missing = sorted(served.keys() - RULES.keys())
    stale = sorted(RULES.keys() - served.keys())
    unguarded = sorted(
        key for key, guarded in served.items() if not guarded and RULES.get(key) != PUBLIC
    )
    ui = ui_problems(app)
    if missing or stale or unguarded or ui:
        raise RuntimeError(
            "clew.server.permissions.RULES does not match the routes: "
            f"without a permission: {missing or 'none'}; without a route: {stale or 'none'}; "
            f"non-public but not behind authorize: {unguarded or 'none'}; "
            f"/ui routes without a ROUTE_PERMISSIONS entry or unguarded: {ui or 'none'}. "
            "Give every route exactly one entry."
        )
