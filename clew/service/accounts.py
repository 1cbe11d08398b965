"""Users, API tokens and per-model grants: who is calling a clew server, and what they may do.

Tokens are 256-bit random strings shown once; only their SHA-256 is stored (a slow password
hash buys nothing for secrets this long, and a fast lookup keeps every request cheap). Every
token expires; a revoked or expired token is refused with a message saying which. A *signing*
token is a second, separate secret that is never accepted as a bearer token: approvals need it
as a fresh proof of identity, so a leaked CI token cannot sign anything.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Connection, select, update

from clew.domain import ids, refs
from clew.domain.roles import Role
from clew.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NameConflictError,
    NotFoundError,
    PolicyError,
)
from clew.service import audit
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store
from clew.store.metadata import DriverStatement

TOKEN_PREFIX = "clew_"
API, SIGNING = "api", "signing"
PURPOSES = (API, SIGNING)
DEFAULT_DAYS = 90
MAX_DAYS = 366
DAY_MS = 86_400_000
PREFIX_MARK = "*"  # a grant on ``fraud-*`` covers every model whose name starts with ``fraud-``
_NAME_PREFIX = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.\-]{{0,198}}{re.escape(PREFIX_MARK)}$")
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,99}$")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. Services receive ``name`` as the actor, never a claimed name."""

    name: str
    role: Role
    grants: dict[str, Role] = field(default_factory=dict, compare=False, hash=False)
    token_id: str | None = None

    def role_for(self, model: str | None) -> Role:
        """The caller's role, raised (never lowered) by a grant on ``model`` or on a name
        prefix it starts with. Where no model is named (runs, artifacts), a grant raises a
        viewer to contributor at most: a contributor scoped to some models still logs their
        own runs and artifacts, from which versions of those models are registered."""
        if not model:
            widest = max(self.grants.values(), default=Role.VIEWER)
            return max(self.role, min(widest, Role.CONTRIBUTOR))
        return max([self.role, *(role for on, role in self.grants.items() if covers(on, model))])


def covers(grant: str, model: str) -> bool:
    """Whether a grant on ``grant`` (a model name, or a prefix ending in ``*``) covers ``model``."""
    if grant.endswith(PREFIX_MARK):
        return model.startswith(grant[: -len(PREFIX_MARK)])
    return grant == model


ANONYMOUS = Principal("anonymous", Role.VIEWER)


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``secret`` is shown to its owner once and never stored."""

    id: str
    user: str
    purpose: str
    expires_ms: int
    secret: str


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_user(store: Store, name: str, role: str, actor: str) -> Principal:
    if not isinstance(name, str) or not _USER_NAME.match(name) or name == ANONYMOUS.name:
        raise InvalidInputError(
            f"user name {name!r} is not allowed; use letters, digits and . _ @ - "
            "(at most 100 characters)."
        )
    parsed = Role.parse(role)
    with store.db.write() as connection:
        if _user_row(connection, name) is not None:
            raise ConflictError(f"user {name!r} already exists; use `clew admin set-role`.")
        row = {"name": name, "role": parsed.label, "created_ms": now_ms(), "created_by": actor}
        connection.execute(schema.users.insert().values(**row))
        audit.append(connection, actor, "user.create", f"user:{name}", row)
    return Principal(name, parsed)


def create_token(
    store: Store,
    user: str,
    actor: str,
    *,
    purpose: str = API,
    days: int = DEFAULT_DAYS,
    description: str = "",
) -> IssuedToken:
    if purpose not in PURPOSES:
        raise InvalidInputError(f"token purpose {purpose!r} must be 'api' or 'signing'.")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInputError(f"token lifetime {days!r} must be 1 to {MAX_DAYS} days.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = now_ms()
    token_id = ids.new_id()
    expires_ms = created + days * DAY_MS
    row = {
        "id": token_id,
        "user_name": user,
        "token_hash": hash_token(secret),
        "purpose": purpose,
        "description": description[:200],
        "created_ms": created,
        "created_by": actor,
        "expires_ms": expires_ms,
        "revoked_ms": None,
    }
    with store.db.write() as connection:
        if _user_row(connection, user) is None:
            raise NotFoundError(f"user {user!r} does not exist; create it first.")
        connection.execute(schema.api_tokens.insert().values(**row))
        logged = {key: value for key, value in row.items() if key != "token_hash"}
        audit.append(connection, actor, "token.create", f"user:{user}", logged)
    return IssuedToken(token_id, user, purpose, expires_ms, secret)


def revoke_token(store: Store, token_id: str, actor: str) -> None:
    table = schema.api_tokens
    with store.db.write() as connection:
        row = connection.execute(select(table).where(table.c.id == token_id)).first()
        if row is None:
            raise NotFoundError(f"token {token_id} does not exist.")
        if row.revoked_ms is None:
            connection.execute(
                update(table).where(table.c.id == token_id).values(revoked_ms=now_ms())
            )
            audit.append(connection, actor, "token.revoke", f"user:{row.user_name}", token_id)


def grant(store: Store, user: str, model: str, role: str, actor: str) -> None:
    """Give ``user`` at least ``role`` on one registered model, or on every model whose name
    starts with a prefix (``fraud-*``), replacing an earlier grant on the same name."""
    parsed = Role.parse(role)
    table = schema.model_grants
    with store.db.write() as connection:
        if _user_row(connection, user) is None:
            raise NotFoundError(f"user {user!r} does not exist; create it first.")
        _check_grant_target(connection, model)
        connection.execute(
            table.delete().where(table.c.user_name == user, table.c.model_name == model)
        )
        row = {
            "user_name": user,
            "model_name": model,
            "role": parsed.label,
            "created_ms": now_ms(),
            "created_by": actor,
        }
        connection.execute(table.insert().values(**row))
        audit.append(connection, actor, "grant.set", f"user:{user}", row)


@dataclass(frozen=True)
class Grant:
    """One per-model (or per-prefix) grant; ``problem`` says why it is dangling, else None.

    A grant is dangling when it names a model that does not exist, or was made before its
    model existed: stores from before grants were checked accepted such names, and whoever
    registered the name first took over the grantee's rights on it.
    """

    user: str
    model: str
    role: str
    created_ms: int
    created_by: str
    problem: str | None = None


DANGLING_FIX = "revoke them with `clew admin revoke-grant --dangling`, then grant what should stay"


def list_grants(store: Store) -> list[Grant]:
    """Every grant, by user and model name, each with its ``problem`` if it is dangling."""
    with store.db.read() as connection:
        return _grants(connection)


def dangling_grants(store: Store) -> list[Grant]:
    """The grants whose ``problem`` is set (see ``Grant``)."""
    return [found for found in list_grants(store) if found.problem]


def revoke_grant(store: Store, user: str, model: str, actor: str) -> None:
    """Take ``user``'s grant on ``model`` (a name or ``prefix*``) away (audited)."""
    table = schema.model_grants
    with store.db.write() as connection:
        deleted = connection.execute(
            table.delete().where(table.c.user_name == user, table.c.model_name == model)
        )
        if not deleted.rowcount:
            raise NotFoundError(
                f"user {user!r} has no grant on {model!r}; list grants with `clew admin grants`."
            )
        audit.append(connection, actor, "grant.revoke", f"user:{user}", {"model_name": model})


def revoke_dangling_grants(store: Store, actor: str) -> list[Grant]:
    """Revoke every dangling grant in one transaction (each audited); returns what was revoked.

    The grants are found again inside the write, so a model registered meanwhile is judged as
    it is when the grant goes."""
    table = schema.model_grants
    with store.db.write() as connection:
        revoked = [found for found in _grants(connection) if found.problem]
        for found in revoked:
            connection.execute(
                table.delete().where(
                    table.c.user_name == found.user, table.c.model_name == found.model
                )
            )
            payload = {"model_name": found.model, "role": found.role, "problem": found.problem}
            audit.append(connection, actor, "grant.revoke", f"user:{found.user}", payload)
    return revoked


def _grants(connection: Connection) -> list[Grant]:
    grants, models = schema.model_grants, schema.models
    query = (
        select(
            grants,
            models.c.created_ms.label("model_created_ms"),
            models.c.created_by.label("owner"),
        )
        .select_from(grants.outerjoin(models, models.c.name == grants.c.model_name))
        .order_by(grants.c.user_name, grants.c.model_name)
    )
    return [
        Grant(
            row.user_name,
            row.model_name,
            row.role,
            row.created_ms,
            row.created_by,
            _grant_problem(row),
        )
        for row in connection.execute(query)
    ]


def _grant_problem(row: Any) -> str | None:
    """Why a grant row (joined to its model, if any) is dangling, in one sentence."""
    if row.model_name.endswith(PREFIX_MARK):
        return None
    rights = f"{row.user_name!r}'s {row.role} rights"
    if row.model_created_ms is None:
        return (
            f"model {row.model_name!r} does not exist, so whoever registers that name gets "
            f"{rights} on it"
        )
    if row.model_created_ms > row.created_ms:
        return (
            f"the grant is older than model {row.model_name!r}, so {row.owner!r} registered a "
            f"name that already carried {rights}"
        )
    return None


def _check_grant_target(connection: Connection, model: str) -> None:
    """A grant names an existing model or a name prefix: a grant on a name nobody holds yet
    would hand its rights to whoever registers that name first."""
    if PREFIX_MARK in model:
        if not _NAME_PREFIX.match(model):
            raise InvalidInputError(
                f"{model!r} is not a name prefix; write the start of model names followed by "
                f"one {PREFIX_MARK}, such as 'fraud-{PREFIX_MARK}'."
            )
        return
    models = schema.models
    key = refs.name_key(model) if isinstance(model, str) else ""
    found = connection.execute(select(models.c.name).where(models.c.name_key == key)).scalars()
    names = list(found)
    if model in names:
        return
    if names:
        raise NameConflictError(
            f"model {model!r} does not exist; it is {names[0]!r} (names are compared ignoring "
            "case), so grant on that name."
        )
    raise NotFoundError(
        f"model {model!r} does not exist, so nobody can be granted a role on it (whoever created "
        f"it later would hand over its rights); register it first, or grant on a name prefix "
        f"such as '{model}{PREFIX_MARK}'."
    )


class _TokenRow(NamedTuple):
    id: str
    user_name: str
    purpose: str
    expires_ms: int
    revoked_ms: int | None
    role: str
    disabled_ms: int | None
    grant_model: str | None
    grant_role: str | None


# Every request a server answers checks its token, so this is one plain statement read with its
# owner and their grants (a row per grant), not two SQLAlchemy queries built per call.
_TOKEN = DriverStatement(
    "SELECT t.id, t.user_name, t.purpose, t.expires_ms, t.revoked_ms, u.role, u.disabled_ms, "
    "g.model_name, g.role FROM api_tokens t JOIN users u ON u.name = t.user_name "
    "LEFT JOIN model_grants g ON g.user_name = t.user_name WHERE t.token_hash = :token_hash"
)


def authenticate(store: Store, secret: str, purpose: str = API) -> Principal:
    """The principal owning ``secret``; refuses unknown, expired, revoked and wrong-purpose."""
    with store.db.read_statement() as connection:
        rows = [
            _TokenRow(*row) for row in _TOKEN.all(connection, {"token_hash": hash_token(secret)})
        ]
    row = rows[0] if rows else None
    _check_token(row, purpose)
    assert row is not None
    grants = {one.grant_model: Role.parse(str(one.grant_role)) for one in rows if one.grant_model}
    return Principal(row.user_name, Role.parse(row.role), grants, row.id)


def account_role(connection: Connection, user: str, model: str | None = None) -> Role | None:
    """``user``'s account role on ``model`` (grants included), None for a name with no account:
    what an account role named in the approval policy is checked against."""
    row = _user_row(connection, user)
    if row is None or row.disabled_ms is not None:
        return None
    return Principal(user, Role.parse(row.role), grants_of(connection, user)).role_for(model)


def grants_of(connection: Connection, user: str) -> dict[str, Role]:
    """``user``'s per-model (and per-prefix) grants, by model name or ``prefix*``."""
    table = schema.model_grants
    query = select(table.c.model_name, table.c.role).where(table.c.user_name == user)
    return {model: Role.parse(role) for model, role in connection.execute(query)}


def _check_token(row: Any, purpose: str) -> None:
    try:
        _refuse_token(row, purpose)
    except AuthenticationError as error:
        error.user = row.user_name if row is not None else None
        raise


def _refuse_token(row: Any, purpose: str) -> None:
    if row is None:
        raise AuthenticationError(
            "the token is not recognised; check CLEW_TOKEN or ask an admin for a new token."
        )
    if row.revoked_ms is not None:
        raise AuthenticationError(f"token {row.id} was revoked; ask an admin for a new token.")
    if row.expires_ms <= now_ms():
        raise AuthenticationError(f"token {row.id} has expired; ask an admin for a new token.")
    if row.disabled_ms is not None:
        raise AuthenticationError(f"user {row.user_name} is disabled; ask an admin.")
    if row.purpose != purpose:
        kind = "a signing token" if row.purpose == SIGNING else "an API token"
        raise AuthenticationError(
            f"token {row.id} is {kind} and cannot be used here; use your "
            f"{'API' if purpose == API else 'signing'} token."
        )


def _user_row(connection: Connection, name: str) -> Any:
    return connection.execute(select(schema.users).where(schema.users.c.name == name)).first()


_RUN_OWNER = DriverStatement("SELECT user_name FROM runs WHERE id = :run_id")


def require_run_writer(store: Store, run_id: str, principal: Principal) -> None:
    """Only a run's own user (or an admin) may write to it: nobody logs into someone else's run.

    A run that does not exist passes: the service then refuses the write with the same error,
    in the same order of checks, as on an embedded store.
    """
    with store.db.read_statement() as connection:
        found = _RUN_OWNER.first(connection, {"run_id": run_id})
    owner = found[0] if found else None
    if owner is not None and owner != principal.name and principal.role < Role.ADMIN:
        raise PolicyError(
            f"run {run_id} belongs to {owner!r}; only its owner or an admin may write to it."
        )
