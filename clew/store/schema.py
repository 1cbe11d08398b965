"""The metadata tables. Alembic migrations in ``migrations/`` create exactly these.

Lineage follows ML Metadata's small vocabulary: artifacts, runs (executions), contexts and
edges between them; new kinds of things are new ``type`` values, not new tables. The registry
tables add what the graph cannot express on its own: per-name version numbers allocated in the
database, append-only approval/alias events, policies and the hash-chained audit log.
Times are integer milliseconds since the epoch (UTC) in every backend.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

ID = String(26)
NAME = String(200)

store_info = Table(
    "store_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

contexts = Table(
    "contexts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("type", String(40), nullable=False),
    Column("name", NAME, nullable=False),
    Column("description", Text),
    Column("properties", Text, nullable=False, default="{}"),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    # refs.name_key(name); NULL only for look-alikes created before names were compared so
    # (migration 0006 keeps them working and reports them, never merges them).
    Column("name_key", NAME),
    UniqueConstraint("type", "name", name="uq_contexts_type_name"),
    Index("uq_contexts_type_name_key", "type", "name_key", unique=True),
)

runs = Table(
    "runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("experiment_id", ID, ForeignKey("contexts.id"), nullable=False),
    Column("parent_id", ID, ForeignKey("runs.id")),
    Column("name", NAME, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("user_name", NAME, nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger),
    Column("command", Text),
    Column("seed", BigInteger),
    Column("code_artifact_id", ID),
    Column("environment_artifact_id", ID),
    Column("properties", Text, nullable=False, default="{}"),
    Index("ix_runs_experiment_start", "experiment_id", "start_ms"),
    Index("ix_runs_start", "start_ms"),
    Index("ix_runs_parent", "parent_id"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_params_key_value", "key", "value"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_tags_key_value", "key", "value"),
)

# One row per logged point. NULL ``value`` means NaN: SQLite cannot store NaN in a REAL column,
# so both backends use the same encoding. ±inf are stored as themselves.
metrics = Table(
    "metrics",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("value", Float),
    Index("ix_metrics_run_key_step", "run_id", "key", "step"),
)

latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("value", Float),
    Index("ix_latest_metrics_key_value", "key", "value"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("type", String(40), nullable=False),
    Column("name", NAME, nullable=False),
    Column("digest", String(71), nullable=False),
    Column("size", BigInteger),
    Column("uri", Text),
    Column("properties", Text, nullable=False, default="{}"),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    UniqueConstraint("type", "name", "digest", name="uq_artifacts_type_name_digest"),
    Index("ix_artifacts_digest", "digest"),
    Index("ix_artifacts_type_name_created", "type", "name", "created_ms"),
)

# Directed edges of the lineage graph. Kinds are 'artifact', 'run' or 'context'.
edges = Table(
    "edges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_id", ID, nullable=False),
    Column("source_kind", String(10), nullable=False),
    Column("destination_id", ID, nullable=False),
    Column("destination_kind", String(10), nullable=False),
    Column("association", String(20), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("source_id", "destination_id", "association", name="uq_edges"),
    # An upstream walk step (graph.walk_nodes) is answered by this index alone: the near end,
    # then everything the step returns. Downstream steps read ``uq_edges`` and the table.
    Index("ix_edges_upstream", "destination_id", "association", "source_id", "source_kind"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(71), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("kind", String(10), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False, unique=True),
    Column("owner", NAME, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("risk_tier", String(40)),
    Column("tags", Text, nullable=False, default="{}"),
    Column("last_version", Integer, nullable=False, default=0),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    # refs.name_key(name), unique: see contexts.name_key.
    Column("name_key", NAME),
    Index("uq_models_name_key", "name_key", unique=True),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("model_id", ID, ForeignKey("models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("artifact_id", ID, ForeignKey("artifacts.id"), nullable=False),
    Column("digest", String(71), nullable=False),
    Column("run_id", ID, ForeignKey("runs.id")),
    Column("signature", Text, nullable=False, default="{}"),
    Column("metrics", Text, nullable=False, default="{}"),
    Column("description", Text, nullable=False, default=""),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_versions"),
)

# Append-only: approvals, rejections, revocations, alias moves and archiving. Current state
# (is version 3 approved? what is churn@production?) is always derived from these rows.
registry_events = Table(
    "registry_events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("model_id", ID, ForeignKey("models.id"), nullable=False),
    Column("version", Integer),
    Column("kind", String(20), nullable=False),
    Column("alias", NAME),
    Column("from_version", Integer),
    Column("actor", NAME, nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("evidence", Text, nullable=False, default="{}"),
    # The store's order of events (registry.event_order): the newest event is the highest seq.
    Column("seq", BigInteger),
    Index("uq_registry_events_seq", "seq", unique=True),
    # Alias events only: a registration or decision writes no page of it (migration 0013).
    # PostgreSQL holds the same partial index (0013 builds it); a postgresql_where here would
    # make SQLAlchemy import its PostgreSQL dialect into every process that opens a SQLite store
    # (~0.06 CPU-s of each CLI command), and Alembic compares no index predicates anyway.
    Index(
        "ix_registry_events_alias_seq",
        "model_id",
        "alias",
        "seq",
        sqlite_where=text("alias IS NOT NULL"),
    ),
    Index("ix_registry_events_version_seq", "model_id", "version", "seq"),
    # SQLite keeps the rows in their key's b-tree: one b-tree fewer written per event.
    sqlite_with_rowid=False,
)

policies = Table(
    "policies",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("document", Text, nullable=False),
    Column("digest", String(71), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    # On SQLite the table's own key (the rowid): no separate index to write per entry.
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("time_ms", BigInteger, nullable=False),
    Column("actor", NAME, nullable=False),
    Column("action", String(60), nullable=False),
    Column("target", Text, nullable=False),
    # The server's request id: a client's X-Request-ID of up to 64 characters, or a new id.
    Column("request_id", String(64), nullable=False),
    Column("payload_digest", String(71), nullable=False),
    Column("prev_hash", String(71), nullable=False),
    Column("hash", String(71), nullable=False),
    # The digest of the entry's row images (``audit_records``), covered by ``hash``; NULL for an
    # entry that wrote no covered row.
    Column("records_digest", String(71)),
    Index("ix_audit_target", "target"),
)

# The image of every governance and lineage row an audit entry wrote (clew/store/row_images.py):
# the row's covered columns as canonical JSON, or NULL for a deleted row. The newest image of a
# row must equal the row as stored; ``clew audit verify`` and trace compare them.
#
# Keyed by ``record_id`` = ``seq << 24 | position`` (clew/store/row_images.py): on SQLite that is
# the table's own rowid, so an entry's images are one range of the table and no index on
# (seq, position) is written beside it (one b-tree page less per durable registration).
RECORD_POSITION_BITS = 24
audit_records = Table(
    "audit_records",
    metadata,
    Column(
        "record_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("seq", BigInteger, nullable=False),
    Column("position", Integer, nullable=False),
    Column("table_name", String(40), nullable=False),
    Column("row_key", Text, nullable=False),
    Column("image", Text),
    Index("ix_audit_records_row", "table_name", "row_key", "seq"),
)

# Signed tree heads (RFC 6962's idea): the audit chain's head at ``seq`` signed with the store's
# key, which never lives in this database. Exported copies prove the chain was only appended to.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(71), nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Column("key_id", String(71), nullable=False),
    Column("signature", Text, nullable=False),
)

capture_batches = Table(
    "capture_batches",
    metadata,
    Column("id", ID, primary_key=True),
    Column("model_version_id", ID, ForeignKey("model_versions.id"), nullable=False),
    Column("path", Text, nullable=False),
    Column("file_digest", String(71), nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_call", ID, nullable=False),
    Column("last_call", ID, nullable=False),
    Column("merkle_root", String(71), nullable=False),
    Column("signature", Text, nullable=False),
    Column("key_id", String(71), nullable=False),
    Column("dropped", Integer, nullable=False, default=0),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_capture_calls", "first_call", "last_call"),
    Index("ix_capture_batches_version", "model_version_id"),
)

# The capture signing keys, oldest first by ``previous_key_id``: the bound key, then one row per
# rotation. Verification picks a batch's public key here by the key id it was signed with; the
# unique ``previous_key_id`` keeps the history one line (two rotations from one key can't both
# commit). The current key is also ``store_info.capture_public_key``.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("key_id", String(71), primary_key=True),
    Column("public_key", Text, nullable=False),
    Column("actor", NAME, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("previous_key_id", String(71), unique=True),
)

labels = Table(
    "labels",
    metadata,
    Column("prediction_id", String(40), primary_key=True),
    Column("label", Text, nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Column("actor", NAME, nullable=False),
)

# --- server accounts: who may call a clew server ---------------------------------------------

users = Table(
    "users",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("disabled_ms", BigInteger),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_name", String(100), ForeignKey("users.name"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("purpose", String(10), nullable=False),
    Column("description", String(200), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger),
    Index("ix_api_tokens_user", "user_name"),
)

model_grants = Table(
    "model_grants",
    metadata,
    Column("user_name", String(100), ForeignKey("users.name"), primary_key=True),
    Column("model_name", NAME, primary_key=True),
    Column("role", String(20), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_name", String(100), primary_key=True),
    Column("key", String(100), primary_key=True),
    Column("request_digest", String(64), nullable=False),
    Column("status_code", Integer),
    Column("response", Text),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_idempotency_keys_created", "created_ms"),
)

# Users' public signing keys (Part 11 e-signatures): approvals, rejections, revocations and
# promotions are verified against the key registered to their actor. Public halves only;
# each registration and revocation is an audited write (see clew.service.user_keys).
user_keys = Table(
    "user_keys",
    metadata,
    Column("key_id", String(71), primary_key=True),
    Column("user_name", String(100), nullable=False),
    Column("public_key", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("revoked_ms", BigInteger),
    Column("revoked_by", NAME),
    Index("ix_user_keys_user", "user_name"),
)

# Web UI sign-ins: the browser's cookie holds a random session id, this table only its hash.
# Each session ends when idle for ``idle_ms``, at ``expires_ms``, on logout or when an admin
# revokes it, and with the API token it was opened with (see clew.service.sessions).
ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("user_name", String(100), ForeignKey("users.name"), nullable=False),
    Column("token_id", ID, ForeignKey("api_tokens.id"), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False),
    Column("idle_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("client", String(100), nullable=False),
    Column("user_agent", String(200), nullable=False),
    Column("revoked_ms", BigInteger),
    Column("revoked_by", NAME),
    Index("ix_ui_sessions_user", "user_name"),
)

# --- webhooks: registry and monitoring events delivered to subscribers ------------------------

# Who is told about which registry events (clew.service.webhooks). ``model_id`` NULL means every
# model; ``kinds`` is a JSON list of event kinds (empty: all). The HMAC secret is kept only as
# ``secret_box``, AES-GCM under a key that never lives in this database (``key_id`` names it).
# ``cursor_seq`` is the newest registry event seq already turned into deliveries: bookkeeping,
# left out of the row's audit image. A removed subscription keeps its row (``deleted_ms``).
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("url", Text, nullable=False),
    Column("model_id", ID, ForeignKey("models.id")),
    Column("kinds", Text, nullable=False, default="[]"),
    Column("secret_box", Text, nullable=False),
    Column("key_id", String(71), nullable=False),
    Column("cursor_seq", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("deleted_ms", BigInteger),
    Column("deleted_by", NAME),
)

# The delivery log and outbox: one row per (subscription, event), written in the transaction that
# advances the subscription's cursor, so an event is never skipped nor queued twice. ``status`` is
# pending, delivered, failed (gave up) or cancelled (subscription removed); a deliverer leases a
# due row (``lease_id``, ``lease_until_ms``) before sending it outside any transaction.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", ID, primary_key=True),
    Column("subscription_id", ID, ForeignKey("webhook_subscriptions.id"), nullable=False),
    Column("event_id", ID, nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("lease_id", ID),
    Column("lease_until_ms", BigInteger),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_ms", BigInteger, nullable=False),
    Column("delivered_ms", BigInteger),
    UniqueConstraint("subscription_id", "event_seq", name="uq_webhook_deliveries_event"),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_ms"),
)

# --- monitoring: runs of the monitor per window, and schedules --------------------------------

# One row per monitor run of one window (``Window.key``): ``attempt`` 0 is the first run, and a
# rerun asked for explicitly is the next attempt, so a window runs once however often it is asked
# for. ``run_id`` is the run in lineage holding the reports as artifacts and figures as metrics.
monitor_runs = Table(
    "monitor_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("window_key", String(300), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("model_id", ID, ForeignKey("models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("start_ms", BigInteger),
    Column("end_ms", BigInteger),
    Column("last_n", Integer),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("violations", Integer, nullable=False),
    Column("report_digest", String(71), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    UniqueConstraint("window_key", "attempt", name="uq_monitor_runs_window"),
    Index("ix_monitor_runs_model", "model_id", "version", "created_ms"),
)

# Monitor schedules that ``clew server`` runs: ``target`` is the ref as typed (``churn@production``
# follows the alias), ``cron`` a five-field expression, ``window_ms`` the window each run reads.
monitor_schedules = Table(
    "monitor_schedules",
    metadata,
    Column("id", ID, primary_key=True),
    Column("model_id", ID, ForeignKey("models.id"), nullable=False),
    Column("target", NAME, nullable=False),
    Column("cron", String(120), nullable=False),
    Column("window_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    UniqueConstraint("target", "cron", "window_ms", name="uq_monitor_schedules"),
)

# Sign-in attempts and failed token checks, by ``address:<client>`` or ``account:<user>``, and
# the keys refused until ``until_ms`` once past their limit: kept in the store so that every
# server process behind a load balancer counts the same attempts (clew.service.login_attempts).
# Rows older than the window are deleted as new ones come.
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", NAME, nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Index("ix_login_attempts_key_time", "key", "time_ms"),
    Index("ix_login_attempts_time", "time_ms"),
)

login_blocks = Table(
    "login_blocks",
    metadata,
    Column("key", NAME, primary_key=True),
    Column("until_ms", BigInteger, nullable=False),
    Index("ix_login_blocks_until", "until_ms"),
)

# Serving deployments: one ``clew serve`` process answering ``endpoint`` with one version, as
# the champion or as a shadow of the champion deployment ``champion_id``, from ``started_ms``
# until ``stopped_ms`` (NULL while it serves). ``run_id`` is its run of kind ``deployment``,
# the node lineage walks from the model (clew.service.deployments).
deployments = Table(
    "deployments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("endpoint", NAME, nullable=False),
    Column("role", String(20), nullable=False),
    Column("version_id", ID, ForeignKey("model_versions.id"), nullable=False),
    Column("champion_id", ID, nullable=True),
    Column("run_id", ID, nullable=True),
    Column("address", NAME, nullable=False),
    Column("started_ms", BigInteger, nullable=False),
    Column("started_by", NAME, nullable=False),
    Column("stopped_ms", BigInteger, nullable=True),
    Column("stopped_by", NAME, nullable=True),
    Index("ix_deployments_endpoint_started", "endpoint", "started_ms"),
)

# Which champion call each shadow call answered in parallel (``clew serve --shadow``): row ``i``
# of ``champion_call`` and of ``shadow_call`` saw the same input, for ``clew shadow report``.
shadow_pairs = Table(
    "shadow_pairs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", ID, ForeignKey("deployments.id"), nullable=False),
    Column("champion_call", ID, nullable=False),
    Column("shadow_call", ID, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("request_id", NAME, nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Index("ix_shadow_pairs_deployment", "deployment_id", "time_ms"),
)

# Validation findings (SR 11-7) against a model version (clew.service.findings): a row is
# updated as the finding moves from open to remediated, accepted or closed; every write images
# the row in the audit chain, so the history is the chain's and an edit behind clew's back shows.
validation_findings = Table(
    "validation_findings",
    metadata,
    Column("id", ID, primary_key=True),
    Column("model_id", ID, ForeignKey("models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("severity", String(20), nullable=False),
    Column("description", Text, nullable=False),
    Column("remediation", Text, nullable=False),
    Column("owner", NAME, nullable=False),
    Column("due_ms", BigInteger),
    Column("status", String(20), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("updated_by", NAME, nullable=False),
    Index("ix_validation_findings_model", "model_id", "version", "status"),
)

# The edited part of a version's model card (clew.service.cards), append-only: each edit is the
# next ``revision`` holding the whole edited document, so every earlier card stays readable.
model_cards = Table(
    "model_cards",
    metadata,
    Column("id", ID, primary_key=True),
    Column("model_id", ID, ForeignKey("models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("digest", String(71), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", NAME, nullable=False),
    UniqueConstraint("model_id", "version", "revision", name="uq_model_cards_revision"),
)
