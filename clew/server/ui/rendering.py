"""Turning page data into HTML: the Jinja environment, its filters and the security headers.

Autoescaping is on for every template, so any text a user typed (a run name, a comment, a
tag value) is shown as text, never as markup. Links built from stored values go through
``safe_href``, which only lets http(s) URLs through, so a ``javascript:`` permalink stays
inert. The Content-Security-Policy forbids inline scripts and styles: if something ever did
slip markup into a page, the browser still would not run it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from clew.domain import records

TEMPLATES = Path(__file__).parent / "templates"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def format_time(ms: int | None) -> str:
    """UTC to the second, the way an audit report quotes it."""
    moment = records.ms_to_datetime(ms)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def format_iso(text: str | None) -> str:
    """An ISO time from a record's ``to_dict()`` shown like ``format_time``."""
    if not text:
        return ""
    return text.replace("T", " ").split(".")[0].removesuffix("Z") + " UTC"


def format_duration(start_ms: int | None, end_ms: int | None) -> str:
    if start_ms is None or end_ms is None:
        return ""
    seconds = (end_ms - start_ms) / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_value(value: Any) -> str:
    """Metrics to 4 significant digits, NaN and infinities spelled out, the rest as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def short_digest(digest: str | None, length: int = 12) -> str:
    if not digest:
        return ""
    return digest.removeprefix("sha256:")[:length]


def safe_href(url: Any) -> str | None:
    """The URL if it is an absolute http(s) link, else None (no javascript:, data:, files)."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def finite(value: Any) -> Any:
    """NaN and infinities become None: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def to_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&``."""
    text = json.dumps(finite(value), default=str, allow_nan=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        time=format_time,
        iso=format_iso,
        duration=format_duration,
        value=format_value,
        digest=short_digest,
        href=safe_href,
    )
    return environment


ENVIRONMENT = _environment()


def render(template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    html = ENVIRONMENT.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
