"""Registry and governance methods of ``Client``: register, approve, promote, load.

``GovernanceMixin`` is mixed into ``Client``; the module functions below call the default
client and are re-exported by ``clew``. The rules themselves live in ``clew.service``
(registry, approvals, promotion, policy); this layer turns Python objects into refs, pandas
frames and loaded models.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.client.run import ActiveRun
from clew.domain import ids, records, signatures
from clew.domain.keys import SignedStatement
from clew.domain.records import ArtifactRecord, ModelRecord, RegistryEvent, VersionRecord
from clew.errors import IntegrityError, InvalidInputError
from clew.service import user_keys as keyring

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is built: connecting never needs it

    from clew.client.client import Client
    from clew.client.loaded_model import LoadedModel  # numpy and pyarrow: on first load
    from clew.domain.blobs import BlobStore
    from clew.service.protocols import Backend

__all__ = [
    "alias_at",
    "alias_history",
    "alias_history_records",
    "approve",
    "archive",
    "create_model",
    "create_user_key",
    "get_model",
    "get_policy",
    "get_version",
    "list_model_records",
    "list_models",
    "load_model",
    "model_history",
    "model_version_records",
    "model_versions",
    "promote",
    "register_model",
    "register_user_key",
    "reject",
    "revoke",
    "revoke_session",
    "revoke_user_key",
    "rollback",
    "sessions",
    "set_policy",
    "user_keys",
    "version_status",
]

VersionRef = str | VersionRecord
Evidence = str | ArtifactRecord | Sequence[str | ArtifactRecord] | None
MODEL_COLUMNS = [
    "name",
    "owner",
    "risk_tier",
    "latest_version",
    "status",
    "aliases",
    "description",
]
VERSION_COLUMNS = [
    "version",
    "ref",
    "status",
    "approvals",
    "aliases",
    "created_at",
    "created_by",
    "run_id",
    "digest",
    "description",
]
HISTORY_COLUMNS = ["time", "alias", "version", "from_version", "kind", "actor", "comment", "id"]


class GovernanceMixin:
    """Model registry, approvals, policy and promotion (see docs/governance.md)."""

    if TYPE_CHECKING:
        _service: Backend

        @property
        def actor(self) -> str: ...

        def _flush_if_active(self, run_id: str) -> None: ...

    # --- models and versions ----------------------------------------------------------------

    def register_model(
        self,
        source: ArtifactRecord | ActiveRun | str,
        name: str,
        *,
        description: str = "",
        owner: str | None = None,
        risk_tier: str | None = None,
        tags: Mapping[str, Any] | None = None,
        signature: Mapping[str, Any] | None = None,
    ) -> VersionRecord:
        """Register the next version of ``name`` from a logged model or the run that logged it.

        ``owner``, ``risk_tier`` and ``tags`` describe the model when this call creates it.
        The signature is inferred from the training run's input dataset unless given.
        """
        return self._service.registry.register(
            name,
            self._source_ref(source),
            self.actor,
            description=description,
            signature=signature,
            owner=owner,
            risk_tier=risk_tier,
            tags=tags,
        )

    def create_model(
        self,
        name: str,
        *,
        owner: str | None = None,
        description: str = "",
        risk_tier: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        """Create a registered model with no versions yet (register_model also creates it)."""
        return self._service.registry.create_model(
            name, self.actor, owner=owner, description=description, risk_tier=risk_tier, tags=tags
        )

    def get_model(self, name: str) -> ModelRecord:
        return self._service.registry.get_model(name)

    def list_model_records(self) -> list[dict[str, Any]]:
        """The rows of :meth:`list_models` as dicts, for callers that need no pandas (the CLI
        lists models without importing it)."""
        return _columns(self._service.promotion.model_overview(), MODEL_COLUMNS)

    def list_models(self) -> pd.DataFrame:
        """One row per model: owner, risk tier, latest version, its status and the aliases."""
        import pandas as pd

        frame = pd.DataFrame(self.list_model_records(), columns=MODEL_COLUMNS)
        frame["latest_version"] = frame["latest_version"].astype("Int64")
        return frame

    def model_version_records(self, name: str) -> list[dict[str, Any]]:
        """The rows of :meth:`model_versions` as dicts (``created_at`` a UTC datetime), for
        callers that need no pandas."""
        rows = self._service.promotion.version_overview(name)
        for row in rows:
            row["created_at"] = records.ms_to_datetime(row["created_at"])
        return _columns(rows, VERSION_COLUMNS)

    def model_versions(self, name: str) -> pd.DataFrame:
        """One row per version of ``name``, newest first, with status and aliases."""
        import pandas as pd

        return pd.DataFrame(self.model_version_records(name), columns=VERSION_COLUMNS)

    def get_version(self, ref: VersionRef) -> VersionRecord:
        """The version ``churn/3`` or ``churn@production`` names."""
        return self._service.registry.resolve(_ref(ref))

    # --- decisions --------------------------------------------------------------------------

    def approve(
        self,
        ref: VersionRef,
        comment: str,
        *,
        evidence: Evidence = None,
        meaning: str = "approved",
    ) -> RegistryEvent:
        """Approve a version as the current user; ``evidence`` pins the artifacts you relied on.

        Signed with your own key when you have one (``clew keys init``); see
        docs/governance.md#approvals-are-signatures."""
        refs_ = _evidence_refs(evidence)
        signed = self._sign(_ref(ref), "approved", comment, evidence=refs_, meaning=meaning)
        return self._service.approvals.approve(
            _ref(ref), self.actor, comment, evidence=refs_, meaning=meaning, signed=signed
        )

    def reject(self, ref: VersionRef, comment: str, *, evidence: Evidence = None) -> RegistryEvent:
        refs_ = _evidence_refs(evidence)
        signed = self._sign(_ref(ref), "rejected", comment, evidence=refs_)
        return self._service.approvals.reject(
            _ref(ref), self.actor, comment, evidence=refs_, signed=signed
        )

    def revoke(self, ref: VersionRef, comment: str) -> RegistryEvent:
        signed = self._sign(_ref(ref), "revoked", comment)
        return self._service.approvals.revoke(_ref(ref), self.actor, comment, signed=signed)

    def archive(self, ref: VersionRef, comment: str) -> RegistryEvent:
        return self._service.approvals.archive(_ref(ref), self.actor, comment)

    # --- aliases ----------------------------------------------------------------------------

    def promote(
        self, ref: VersionRef, alias: str, comment: str = "", new_alias: bool = False
    ) -> RegistryEvent:
        """Point ``name@alias`` at this version (production aliases need the policy met).

        An alias the model never had, and the policy does not list, needs ``new_alias=True``
        (a misspelt alias is refused, naming the nearest existing one)."""
        signed = self._sign(_ref(ref), keyring.PROMOTED, comment, alias=alias)
        return self._service.promotion.promote(
            _ref(ref), alias, self.actor, comment, new_alias, signed=signed
        )

    def rollback(self, name: str, alias: str, comment: str = "") -> RegistryEvent:
        """Return ``name@alias`` to the version it pointed at before its latest promotion."""
        return self._service.promotion.rollback(name, alias, self.actor, comment)

    def alias_history_records(self, name: str, alias: str | None = None) -> list[dict[str, Any]]:
        """The rows of :meth:`alias_history` as dicts (``time`` a UTC datetime), for callers
        that need no pandas."""
        return [
            {
                "time": records.ms_to_datetime(event.time_ms),
                "alias": event.alias,
                "version": event.version,
                "from_version": event.from_version,
                "kind": event.kind,
                "actor": event.actor,
                "comment": event.comment,
                "id": event.id,
            }
            for event in self._service.promotion.alias_history(name, alias)
        ]

    def alias_history(self, name: str, alias: str | None = None) -> pd.DataFrame:
        """Every move of ``alias`` (or of all aliases of ``name``), newest first."""
        import pandas as pd

        return pd.DataFrame(self.alias_history_records(name, alias), columns=HISTORY_COLUMNS)

    def model_history(self, name: str) -> list[RegistryEvent]:
        """Registrations, decisions and alias moves of ``name``, newest first."""
        return self._service.promotion.model_history(name)

    def alias_at(self, name: str, alias: str, when: dt.datetime) -> VersionRecord | None:
        """The version ``name@alias`` pointed at at ``when`` (None: it pointed nowhere yet)."""
        if not isinstance(when, dt.datetime):
            raise InvalidInputError(f"when must be a datetime, not {type(when).__name__}.")
        return self._service.promotion.alias_at(name, alias, int(when.timestamp() * 1000))

    def version_status(self, ref: VersionRef) -> dict[str, Any]:
        """Approvals, decisions, aliases and whether the version meets the production policy."""
        return self._service.promotion.version_status(_ref(ref))

    # --- users' signing keys -----------------------------------------------------------------

    def create_user_key(self, *, new: bool = False) -> dict[str, Any]:
        """Make your own signing key in your home (0600); ``new`` replaces a lost or revoked one.
        Returns its key id and the public file an admin registers."""
        public_file, public_pem = keyring.create_local_key(self.actor, replace=new)
        return {
            "user": self.actor,
            "key_id": signatures.key_id(public_pem.encode()),
            "private_key_file": str(keyring.key_path(self.actor)),
            "public_key_file": str(public_file),
            "public_key": public_pem,
        }

    def register_user_key(self, user: str, public_key: str | Path) -> dict[str, Any]:
        """Register ``user``'s public key (a PEM file or text) so their signatures verify
        (an admin's action, audited)."""
        text = _pem_text(public_key)
        return self._service.user_keys.register(user, text, self.actor).to_dict()

    def user_keys(self, user: str | None = None) -> list[dict[str, Any]]:
        """Registered signing keys (of ``user``), oldest first, revoked ones included."""
        return [key.to_dict() for key in self._service.user_keys.list_keys(user)]

    def revoke_user_key(self, key_id: str) -> dict[str, Any]:
        """Revoke a key from now on: what it signed before stays valid, nothing after is."""
        return self._service.user_keys.revoke(key_id, self.actor).to_dict()

    # --- web UI sessions (a server's sign-ins) -----------------------------------------------

    def sessions(self, user: str | None = None, *, ended: bool = False) -> list[dict[str, Any]]:
        """Web UI sessions (of ``user``), newest first, never their secrets; live ones only
        unless ``ended`` (on a server: admins only)."""
        return [info.to_dict() for info in self._service.sessions.list_sessions(user, ended)]

    def revoke_session(self, session_id: str) -> dict[str, Any]:
        """End a web UI session at once, on every server replica (admins; audited)."""
        return self._service.sessions.revoke(session_id, self.actor).to_dict()

    def _sign(
        self,
        ref: str,
        decision: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        meaning: str | None = None,
        alias: str | None = None,
    ) -> SignedStatement | None:
        """Sign the statement the store prepares for this decision, if you have a key."""
        key = keyring.find_local_key(self.actor)
        if key is None:
            return None
        prepared = self._service.approvals.statement(
            ref, decision, self.actor, comment, evidence=evidence, meaning=meaning, alias=alias
        )
        return keyring.sign(key, prepared)

    # --- policy -----------------------------------------------------------------------------

    def set_policy(self, path_or_text: str | Path) -> int:
        """Store a policy (a YAML file path or the YAML text); returns its version number."""
        return self._service.policies.set_policy(_policy_text(path_or_text), self.actor)

    def get_policy(self) -> dict[str, Any]:
        """The policy in force: version (0 = built-in default), digest, document and rules."""
        return self._service.policies.get_policy().to_dict()

    # --- loading ----------------------------------------------------------------------------

    def load_model(self, ref: VersionRef) -> LoadedModel:
        """Load a version for inference, after checking it may be used and every file digest.

        Nothing is unpickled until the manifest and each file have been verified, so a
        tampered model is refused with the file and digest that differ. From a server the
        bytes are downloaded and re-hashed here, and unpickled only in this process; its
        predictions are captured by the server (see docs/predictions.md).
        """
        from clew.integrations import flavors  # pluggy and the entry points: on first load

        version = self._service.approvals.loadable(_ref(ref))
        self._service.record_read(version.digest, self.actor)
        directory = Path(tempfile.mkdtemp(prefix="clew-load-"))
        try:
            _export_verified(self._service.store.blobs, version, directory)
            raw = flavors.load(directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        from clew.client.loaded_model import LoadedModel

        loaded = LoadedModel(raw, version, self)  # type: ignore[arg-type]
        weakref.finalize(loaded, shutil.rmtree, directory, ignore_errors=True)
        return loaded

    def _source_ref(self, source: ArtifactRecord | ActiveRun | str) -> str:
        if isinstance(source, ArtifactRecord):
            return f"artifact:{source.id}"
        if isinstance(source, ActiveRun):
            source.flush()
            return f"run:{source.id}"
        if isinstance(source, str) and ids.is_id(source):
            self._flush_if_active(source.upper())
            return f"run:{source.upper()}"
        if isinstance(source, str):
            if source.startswith("run:"):
                self._flush_if_active(source[4:].upper())
            return source
        raise InvalidInputError(
            f"cannot register a {type(source).__name__}; pass the ArtifactRecord from "
            "run.log_model(...), an artifact ref, or the run (or its id) that logged the model."
        )


def _ref(ref: VersionRef) -> str:
    return ref.ref if isinstance(ref, VersionRecord) else ref


def _evidence_refs(evidence: Evidence) -> list[str]:
    if evidence is None:
        return []
    items = [evidence] if isinstance(evidence, str | ArtifactRecord) else list(evidence)
    return [f"artifact:{item.id}" if isinstance(item, ArtifactRecord) else item for item in items]


def _pem_text(public_key: str | Path) -> str:
    """A Path, or a one-line string naming a file, is read; anything else is the PEM."""
    if isinstance(public_key, str) and "\n" in public_key.strip():
        return public_key
    path = Path(public_key).expanduser()
    try:
        return path.read_text()
    except OSError as error:
        raise InvalidInputError(
            f"cannot read public key file {path}: {error.strerror}; pass the <user>.pub.pem "
            "file `clew keys init` wrote."
        ) from error


def _policy_text(path_or_text: str | Path) -> str:
    """A Path, or a one-line string naming an existing file, is read; anything else is YAML."""
    if isinstance(path_or_text, Path):
        try:
            return path_or_text.read_text()
        except OSError as error:
            raise InvalidInputError(f"cannot read policy file {path_or_text}: {error}.") from error
    if isinstance(path_or_text, str) and "\n" not in path_or_text:
        candidate = Path(path_or_text).expanduser()
        if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
            return _policy_text(candidate)
    return path_or_text


def _export_verified(blobs: BlobStore, version: VersionRecord, directory: Path) -> None:
    """Copy the model's files out, each checked against the digest the version recorded."""
    from clew.integrations.flavors import MODEL_FILE

    try:
        manifest = blobs.read_manifest(version.digest)
    except IntegrityError as error:
        raise IntegrityError(
            f"{version.ref}: its manifest {version.digest} does not match its digest (altered "
            "or damaged); nothing was loaded, restore it from a backup."
        ) from error
    except InvalidInputError as error:
        raise InvalidInputError(
            f"{version.ref} is not a model directory saved by run.log_model; it can not be loaded."
        ) from error
    if MODEL_FILE not in manifest:
        raise InvalidInputError(
            f"{version.ref} has no {MODEL_FILE}; it was not saved by run.log_model and "
            "can not be loaded."
        )
    try:
        blobs.export_directory(version.digest, directory)
    except IntegrityError as error:
        damaged = [
            f"{path} ({digest})" for path, digest in manifest.items() if not blobs.verify(digest)
        ]
        raise IntegrityError(
            f"{version.ref}: file {', '.join(damaged) or 'unknown'} does not match its recorded "
            "digest (the stored bytes were altered or damaged); nothing was loaded, restore it "
            "from a backup."
        ) from error


def register_model(
    source: ArtifactRecord | ActiveRun | str, name: str, **options: Any
) -> VersionRecord:
    return _client().register_model(source, name, **options)


def create_model(name: str, **options: Any) -> ModelRecord:
    return _client().create_model(name, **options)


def get_model(name: str) -> ModelRecord:
    return _client().get_model(name)


def list_models() -> pd.DataFrame:
    return _client().list_models()


def list_model_records() -> list[dict[str, Any]]:
    return _client().list_model_records()


def model_versions(name: str) -> pd.DataFrame:
    return _client().model_versions(name)


def model_version_records(name: str) -> list[dict[str, Any]]:
    return _client().model_version_records(name)


def get_version(ref: VersionRef) -> VersionRecord:
    return _client().get_version(ref)


def approve(
    ref: VersionRef, comment: str, *, evidence: Evidence = None, meaning: str = "approved"
) -> RegistryEvent:
    return _client().approve(ref, comment, evidence=evidence, meaning=meaning)


def reject(ref: VersionRef, comment: str, *, evidence: Evidence = None) -> RegistryEvent:
    return _client().reject(ref, comment, evidence=evidence)


def revoke(ref: VersionRef, comment: str) -> RegistryEvent:
    return _client().revoke(ref, comment)


def archive(ref: VersionRef, comment: str) -> RegistryEvent:
    return _client().archive(ref, comment)


def promote(
    ref: VersionRef, alias: str, comment: str = "", new_alias: bool = False
) -> RegistryEvent:
    return _client().promote(ref, alias, comment, new_alias)


def rollback(name: str, alias: str, comment: str = "") -> RegistryEvent:
    return _client().rollback(name, alias, comment)


def alias_history(name: str, alias: str | None = None) -> pd.DataFrame:
    return _client().alias_history(name, alias)


def alias_history_records(name: str, alias: str | None = None) -> list[dict[str, Any]]:
    return _client().alias_history_records(name, alias)


def model_history(name: str) -> list[RegistryEvent]:
    return _client().model_history(name)


def alias_at(name: str, alias: str, when: dt.datetime) -> VersionRecord | None:
    return _client().alias_at(name, alias, when)


def version_status(ref: VersionRef) -> dict[str, Any]:
    return _client().version_status(ref)


def set_policy(path_or_text: str | Path) -> int:
    return _client().set_policy(path_or_text)


def get_policy() -> dict[str, Any]:
    return _client().get_policy()


def load_model(ref: VersionRef) -> LoadedModel:
    return _client().load_model(ref)


def create_user_key(*, new: bool = False) -> dict[str, Any]:
    return _client().create_user_key(new=new)


def register_user_key(user: str, public_key: str | Path) -> dict[str, Any]:
    return _client().register_user_key(user, public_key)


def user_keys(user: str | None = None) -> list[dict[str, Any]]:
    return _client().user_keys(user)


def revoke_user_key(key_id: str) -> dict[str, Any]:
    return _client().revoke_user_key(key_id)


def sessions(user: str | None = None, *, ended: bool = False) -> list[dict[str, Any]]:
    return _client().sessions(user, ended=ended)


def revoke_session(session_id: str) -> dict[str, Any]:
    return _client().revoke_session(session_id)


def _columns(rows: list[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Each row with exactly ``columns``, in their order: the shape its DataFrame has."""
    return [{column: row[column] for column in columns} for row in rows]


def _client() -> Client:
    from clew.client.default import get_client

    return get_client()
