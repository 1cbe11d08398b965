"""``RemoteArtifacts``: recording, finding and exporting artifacts over HTTP, shaped like
``ArtifactService``; bytes go through the blob store the backend gives it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.client.transport import Transport, plain_json
from clew.domain import refs
from clew.domain.artifacts import artifact_ref, export_artifact
from clew.domain.records import ArtifactRecord, from_fields

if TYPE_CHECKING:
    from clew.client.remote_blobs import RemoteBlobStore


class RemoteArtifacts:
    def __init__(self, transport: Transport, blobs: RemoteBlobStore) -> None:
        self._t = transport
        self._blobs = blobs

    def log(
        self,
        *,
        run_id: str | None,
        direction: str,
        type_: str,
        name: str,
        digest: str,
        actor: str,
        size: int | None = None,
        uri: str | None = None,
        properties: Mapping[str, Any] | None = None,
        blobs: Mapping[str, tuple[int, str]] | None = None,
        derived_from: list[str] | None = None,
    ) -> ArtifactRecord:
        body = {
            "run_id": run_id,
            "direction": direction,
            "type": type_,
            "name": name,
            "digest": digest,
            "size": size,
            "uri": uri,
            "properties": plain_json(dict(properties or {})),
            "blobs": {d: [s, kind] for d, (s, kind) in (blobs or {}).items()},
            "derived_from": list(derived_from or []),
        }
        return self._t.record(ArtifactRecord, "POST", "/artifacts", json_body=body)

    def get(self, artifact_id: str) -> ArtifactRecord:
        return self._t.record(ArtifactRecord, "GET", f"/artifacts/{artifact_id}")

    def find(self, ref: refs.ArtifactRef) -> ArtifactRecord:
        text = refs.format_ref(ref)
        return self._t.record(ArtifactRecord, "GET", "/artifacts", params={"ref": text})

    def resolve(self, ref: str) -> ArtifactRecord:
        return self.find(artifact_ref(ref))

    def export(self, artifact: ArtifactRecord, destination: Path) -> Path:
        return export_artifact(self._blobs, artifact, destination)

    def run_artifacts(self, run_id: str) -> dict[str, list[ArtifactRecord]]:
        found = self._t.call("GET", f"/runs/{run_id}/artifacts")
        return {
            side: [from_fields(ArtifactRecord, a) for a in items] for side, items in found.items()
        }
