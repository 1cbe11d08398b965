"""Turning what a user passes to ``log_input``/``log_output`` into a stored artifact.

DataFrames become Parquet datasets with a profile; local files and directories are copied
into the blob store (directories as Merkle manifests); URIs with a scheme (``s3://``...) are
recorded by reference with their size and ETag when the filesystem can tell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clew.client.specs import DataSource, FeatureGroup
from clew.domain import digests
from clew.domain.blobs import Progress
from clew.domain.records import ArtifactRecord
from clew.errors import InvalidInputError
from clew.service import datasets
from clew.service.artifacts import check_type
from clew.service.uploads import check_reference_uri
from clew.store.blobs import LocalBlobStore

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


@dataclass
class Prepared:
    """An artifact ready to record: its blobs are already in the store."""

    type: str
    name: str
    digest: str
    size: int | None = None
    uri: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    blobs: dict[str, tuple[int, str]] = field(default_factory=dict)


def safe_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-.") or "artifact"
    return cleaned[:200] if cleaned[0].isalnum() else f"a{cleaned}"[:200]


def prepare(
    obj: Any,
    blobs: LocalBlobStore,
    *,
    name: str | None,
    type_: str | None,
    direction: str,
    progress: Progress | None = None,
    properties: dict[str, Any] | None = None,
) -> Prepared:
    extra = dict(properties or {})
    if type_ is not None:
        check_type(type_)  # before any byte is hashed or uploaded, not after
    if isinstance(obj, ArtifactRecord):
        return _existing(obj, name, type_, extra)
    if isinstance(obj, FeatureGroup):
        return _feature_group(obj, extra)
    if isinstance(obj, DataSource):
        properties = {**obj.properties, **extra}
        return _reference(
            obj.uri, name or obj.name, type_ or "data_source", properties, obj.resolve
        )
    if _is_dataframe(obj):
        return _dataframe(obj, blobs, name, type_ or "dataset", extra)
    if isinstance(obj, str) and _SCHEME.match(obj) and not obj.startswith("file://"):
        return _reference(obj, name, type_ or "dataset", extra)
    if isinstance(obj, str | Path):
        path = Path(str(obj).removeprefix("file://")).expanduser()
        default = "dataset" if direction == "input" else ("directory" if path.is_dir() else "file")
        return _local(path, blobs, name, type_ or default, progress, extra)
    raise InvalidInputError(
        f"cannot log a {type(obj).__name__}; pass a pandas DataFrame, a file or directory "
        "path, a URI, an artifact logged earlier, clew.data_source(...) or "
        "clew.feature_group(...) (models: log_model)."
    )


def _existing(
    artifact: ArtifactRecord, name: str | None, type_: str | None, extra: dict[str, Any]
) -> Prepared:
    """An artifact recorded earlier (another run's output): linked again, never re-stored."""
    if (name and name != artifact.name) or (type_ and type_ != artifact.type):
        raise InvalidInputError(
            f"{artifact.type}:{artifact.name} is already recorded under that type and name; "
            "log it without name= and type=."
        )
    return Prepared(
        artifact.type,
        artifact.name,
        artifact.digest,
        artifact.size,
        artifact.uri,
        {**artifact.properties, **extra},
    )


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "to_parquet")


def _dataframe(
    frame: Any, blobs: LocalBlobStore, name: str | None, type_: str, extra: dict[str, Any]
) -> Prepared:
    if not name:
        raise InvalidInputError("a DataFrame needs a name: log_input(df, name='churn-train').")
    table = datasets.dataframe_to_table(frame)
    stored = blobs.put_bytes(datasets.table_to_parquet(table))
    properties = {"format": "parquet", **datasets.profile(table), **extra}
    return Prepared(
        type_,
        safe_name(name),
        stored.digest,
        stored.size,
        None,
        properties,
        {stored.digest: (stored.size, "file")},
    )


def _local(
    path: Path,
    blobs: LocalBlobStore,
    name: str | None,
    type_: str,
    progress: Progress | None,
    extra: dict[str, Any],
) -> Prepared:
    if not path.exists():
        raise InvalidInputError(f"{path} does not exist; check the path and retry.")
    if path.is_dir():
        stored = blobs.put_directory(path, progress)
        needed = {digest: (blobs.size_of(digest), "file") for digest in stored.files.values()}
        needed[stored.digest] = (blobs.size_of(stored.digest), "manifest")
        properties = {
            "kind": "directory",
            "files": len(stored.files),
            "source_uri": _source_uri(path, type_),
            **extra,
        }
        return Prepared(
            type_,
            safe_name(name or path.name),
            stored.digest,
            stored.size,
            None,
            properties,
            needed,
        )
    blob = blobs.put_file(path, progress)
    properties = {
        "kind": "file",
        "file_name": path.name,
        "source_uri": _source_uri(path, type_),
        **({} if "statistics" in extra else _profile(path, type_)),
        **extra,
    }
    return Prepared(
        type_,
        safe_name(name or path.name),
        blob.digest,
        blob.size,
        None,
        properties,
        {blob.digest: (blob.size, "file")},
    )


def _source_uri(path: Path, type_: str) -> str | None:
    """Where the bytes were read from (``file:///...``): a fact for people, never opened.
    None for a model, which ``log_model`` saves to a temporary directory first."""
    return None if type_ == "model" else path.resolve().as_uri()


def _profile(path: Path, type_: str) -> dict[str, Any]:
    """Schema, rows and statistics of a Parquet or CSV file, whatever type it is logged as.

    An output file that a later step reads as its input is the same node (one node per
    content), so the node describes the data however it was first logged. Only a ``dataset``
    that cannot be read is an error; another file merely goes undescribed.
    """
    try:
        return datasets.profile_file(path) or {}
    except (ValueError, OSError):
        if type_ == "dataset":
            raise
        return {}


def _reference(
    uri: str, name: str | None, type_: str, extra: dict[str, Any], resolve: bool = True
) -> Prepared:
    """A by-reference artifact; ``resolve`` asks the object store for size and ETag (a plain
    URI string does; ``data_source`` only when told, see ``DataSource.resolve``)."""
    check_reference_uri(uri)  # before _remote_facts: never fetch a refused location
    size, etag = _remote_facts(uri) if resolve else (None, None)
    identity = {"uri": uri, "size": size, "etag": etag}
    properties = {"reference": True, "etag": etag, **extra}
    default_name = uri.rstrip("/").rsplit("/", 1)[-1] or uri
    return Prepared(
        type_, safe_name(name or default_name), digests.digest_json(identity), size, uri, properties
    )


def _remote_facts(uri: str) -> tuple[int | None, str | None]:
    """Size and ETag from the object store when reachable; the URI alone otherwise."""
    try:
        import fsspec

        filesystem, path = fsspec.core.url_to_fs(uri)
        info = filesystem.info(path)
    except Exception:
        return None, None
    etag = info.get("ETag") or info.get("etag") or info.get("md5")
    return info.get("size"), (str(etag).strip('"') if etag else None)


def _feature_group(group: FeatureGroup, extra: dict[str, Any]) -> Prepared:
    features = sorted(str(feature) for feature in group.features)
    if not features:
        raise InvalidInputError(f"feature group {group.name!r} needs at least one feature name.")
    identity = {"name": group.name, "features": features}
    properties = {
        "features": features,
        "description": group.description,
        **group.properties,
        **extra,
    }
    return Prepared(
        "feature_group",
        safe_name(group.name),
        digests.digest_json(identity),
        None,
        None,
        properties,
    )
