"""Every exception clew raises on purpose, grouped by what the caller can do about it.

Each class carries a stable ``code`` (used by the CLI exit path and, later, by the HTTP layer)
and a message written as one sentence that names the thing and the fix.
"""

from __future__ import annotations


class ClewError(Exception):
    """Base class: something clew refused or could not do, explained in one sentence."""

    code = "clew_error"
    http_status = 400


# --- the caller asked for something that is not there -------------------------------------


class NotFoundError(ClewError):
    """The ref, run, artifact, model or prediction you named does not exist in this store."""

    code = "not_found"
    http_status = 404


class InvalidRefError(ClewError):
    """A ref string is not in any of the accepted forms (the message lists them)."""

    code = "invalid_ref"


# --- the caller's input is wrong -------------------------------------------------------------


class InvalidInputError(ClewError):
    """A value passed to clew has the wrong type or shape (a non-numeric metric, a bad name)."""

    code = "invalid_input"


class FilterSyntaxError(InvalidInputError):
    """A search filter could not be parsed; the message points at the offending token."""

    code = "invalid_filter"


class UnknownAliasError(InvalidInputError):
    """The alias was never set on this model (a typo?); pass new_alias=True to create it."""

    code = "unknown_alias"


class ConflictError(ClewError):
    """The write contradicts something already recorded (a param re-logged with a new value)."""

    code = "conflict"
    http_status = 409


class NameConflictError(ConflictError):
    """The name differs from an existing model's or experiment's only in case or Unicode form;
    use the existing name, or choose one that is really different."""

    code = "name_conflict"


class ReproductionError(ConflictError):
    """A version can not be reproduced as recorded (its commit is gone, a dirty run's diff was
    not kept, an input's bytes differ); the message names what and how to fix it."""

    code = "not_reproducible"


class RunFinishedError(ConflictError):
    """The run has ended; start a new run to log more."""

    code = "run_finished"


class AuthenticationError(ClewError):
    """No valid token was presented: missing, unknown, expired or revoked."""

    code = "unauthenticated"
    http_status = 401
    user: str | None = None  # whose token it was, when it was recognised (for rate limits)


class PolicyError(ClewError):
    """The governance policy forbids this action (self-approval, missing evidence, wrong role)."""

    code = "policy_violation"
    http_status = 403


class PolicySyntaxError(InvalidInputError):
    """A policy document could not be parsed or validated; the previous policy stays in force."""

    code = "invalid_policy"


# --- the data on disk is not what it should be --------------------------------------------


class IntegrityError(ClewError):
    """Stored bytes or records do not match their recorded digest or hash chain."""

    code = "integrity_error"
    http_status = 500


class UnverifiedBytesError(IntegrityError):
    """A version's bytes are missing from the store or no longer hash to their digest; upload
    or restore them before registering, approving or promoting it."""

    code = "unverified_bytes"
    http_status = 409


class FileChangedError(ClewError):
    """A file changed or disappeared while clew was hashing it; retry once it is stable."""

    code = "file_changed"
    http_status = 409


class StorageFullError(ClewError):
    """The disk or quota ran out while writing; nothing was recorded; free space and retry."""

    code = "storage_full"
    http_status = 507


class StoreVersionError(ClewError):
    """The store was written by a newer clew; upgrade clew to open it."""

    code = "store_too_new"
    http_status = 500


class StoreMissingError(ClewError):
    """The store's blobs, captures or keys are there but its database is not; restore it."""

    code = "store_database_missing"
    http_status = 500


class StorageFaultError(ClewError):
    """A file of the store can not be read or written (no permission, a read-only or failing
    disk, a damaged or truncated file); the message names the file and the fix."""

    code = "storage_fault"
    http_status = 500


class StoreBusyError(ClewError):
    """Another process held the store locked for too long; retry shortly."""

    code = "store_busy"
    http_status = 503


class QueryTimeoutError(ClewError):
    """A search ran longer than the server allows and was cancelled; narrow the filter, name
    experiments or ask for fewer results."""

    code = "query_timeout"


class TooManySearchesError(ClewError):
    """You already run as many searches at once as the server allows; wait for one to finish
    and retry."""

    code = "too_many_searches"
    http_status = 429


class StoreUnavailableError(ClewError):
    """The database server or object store can not be reached right now; retry shortly."""

    code = "store_unavailable"
    http_status = 503


class TooManyAttemptsError(ClewError):
    """Too many failed sign-ins or token checks from one address or for one account; wait."""

    code = "too_many_attempts"
    http_status = 429

    def __init__(self, message: str, retry_after_s: int = 60) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServerUnavailableError(StoreUnavailableError):
    """The clew server did not answer (down, restarting or a wrong address); check the address
    and retry shortly."""

    code = "server_unavailable"
    http_status = 503


# --- this installation of clew lacks an optional part -------------------------------------


class MissingExtraError(ClewError):
    """The feature needs an optional part of clew that is not installed; the message names the
    pip command that installs it (``pip install 'clew[server]'``)."""

    code = "missing_extra"
    http_status = 500


# --- warnings: clew did what was asked, but it looks like a mistake -------------------------


class UnknownKeyWarning(UserWarning):
    """A search names a metric, param or tag key that no run has (a typo?); nearest keys named."""
