"""``RemotePredictions``: capture, lookup, trace, labels and the store's signing keys over HTTP,
shaped like the embedded backend's predictions."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from clew.client.capture_spool import SpoolSettings, open_spool
from clew.client.remote_capture import ARROW_STREAM, RemoteCaptureWriter, remote_prediction
from clew.client.transport import API, Transport, path_segment, plain_json
from clew.domain.captures import CapturedPrediction, CaptureTarget
from clew.domain.keys import RotationRequest, SigningKey
from clew.domain.trace import Trace

LABEL_BATCH = 10_000


class RemotePredictions:
    """Capture, lookup, trace and labels of predictions on the server's store, over HTTP."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def trace(self, prediction_id: str) -> Trace:
        data = self._t.call("GET", f"/predictions/{path_segment(prediction_id)}/trace")
        return Trace.from_dict(data)

    def log_labels(self, prediction_ids: Sequence[str], labels: Sequence[Any], actor: str) -> int:
        """Sent in requests of at most ``LABEL_BATCH`` pairs (uneven lists go whole, so the
        server refuses them with the service's own message)."""
        ids, values = list(prediction_ids), plain_json(list(labels))
        step = LABEL_BATCH if len(ids) == len(values) else max(len(ids), len(values), 1)
        count = 0
        for start in range(0, max(len(ids), len(values), 1), step):
            body = {
                "prediction_ids": ids[start : start + step],
                "labels": values[start : start + step],
            }
            count += self._t.call("POST", "/labels", json_body=body)["count"]
        return count

    def labels_for(self, prediction_ids: Sequence[str]) -> dict[str, Any]:
        body = {"prediction_ids": list(prediction_ids)}
        labels: dict[str, Any] = self._t.call("POST", "/labels/search", json_body=body)
        return labels

    def public_key(self) -> str:
        pem: str = self._t.call("GET", "/public-key")["pem"]
        return pem

    def signing_keys(self) -> list[SigningKey]:
        return [SigningKey(**key) for key in self._t.call("GET", "/signing-keys")]

    def rotate_signing_key(self, request: RotationRequest, actor: str) -> SigningKey:
        """Only the new public key and its proof go to the server, never the private key; the
        rotation is attributed to the token's user (an admin), not to ``actor``."""
        body = dataclasses.asdict(request)
        return SigningKey(**self._t.call("POST", "/signing-keys", json_body=body))

    def get_prediction(self, prediction_id: str) -> CapturedPrediction:
        """The server's stored row and proof, re-verified here with the public key its batch
        names, from the store's key history."""
        data = self._t.call("GET", f"/predictions/{path_segment(prediction_id)}")
        keys = {key.key_id: key.public_key.encode() for key in self.signing_keys()}
        return remote_prediction(data, keys)

    def capture_writer(self, actor: str, spool: SpoolSettings | None = None) -> RemoteCaptureWriter:
        """Batches go to the server, which signs them and attributes them to the token's user
        (``actor`` is the server's business, not the client's claim); those it does not take
        wait in this server's capture spool."""
        return RemoteCaptureWriter(self._post_capture, open_spool(self._t.base_url, spool))

    def _post_capture(self, target: CaptureTarget, batch_id: str, body: bytes, dropped: int) -> Any:
        path = f"{API}/models/{path_segment(target.name)}/versions/{target.version}/captures"
        params: dict[str, str | int] = {
            "batch": batch_id,
            "method": target.method,
            "dropped": dropped,
        }
        headers = {"Content-Type": ARROW_STREAM}
        response = self._t._with_retries(
            lambda: self._t.http.post(path, content=body, params=params, headers=headers)
        )
        return self._t.decode(response)
