"""Artifact rules both backends apply in the caller's process: what a ref must name to be an
artifact, and how an artifact's bytes leave a blob store (a file, a directory, never a
reference), verified by whichever blob store holds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from clew.domain import refs
from clew.domain.records import ArtifactRecord
from clew.errors import InvalidInputError


class ArtifactBlobs(Protocol):
    """What exporting an artifact needs of a blob store (a local one or a server's)."""

    def export_file(self, digest: str, destination: Path) -> Path: ...

    def export_directory(self, digest: str, destination: Path) -> Path: ...


def artifact_ref(ref: str) -> refs.ArtifactRef:
    """``ref`` parsed, refused unless it names an artifact (shared with the remote client)."""
    parsed = refs.parse(ref)
    if not isinstance(parsed, refs.ArtifactRef):
        raise InvalidInputError(
            f"{ref!r} does not name an artifact; use dataset:<name>, sha256:<hex> or artifact:<id>."
        )
    return parsed


def export_artifact(blobs: ArtifactBlobs, artifact: ArtifactRecord, destination: Path) -> Path:
    """Copy an artifact's bytes out of ``blobs`` (local or a server's), verifying every digest."""
    if artifact.properties.get("reference"):
        raise InvalidInputError(
            f"{artifact.type}:{artifact.name} was recorded by reference only; read it from "
            f"{artifact.uri}."
        )
    if artifact.properties.get("kind") == "directory":
        return blobs.export_directory(artifact.digest, destination)
    return blobs.export_file(artifact.digest, destination)
