"""JSON responses that are safe to open in a browser and faithful to clew's floats.

Metrics may be NaN or ±inf (clew stores them faithfully), which strict JSON cannot carry, so
they are written as ``NaN``/``Infinity`` like Python's ``json`` does and the Python client
reads them back. ``<``, ``>`` and ``&`` are written as ``\\u003c`` escapes (they only ever
occur inside JSON strings), so a name like ``<script>`` can never become markup even if a
browser is tricked into sniffing the response.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse as _StarletteJSON

_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def dumps(content: Any) -> bytes:
    text = json.dumps(content, ensure_ascii=False, allow_nan=True, separators=(",", ":"))
    return text.translate(_ESCAPES).encode()


class JSONResponse(_StarletteJSON):
    def render(self, content: Any) -> bytes:
        return dumps(content)
