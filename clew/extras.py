"""Clew's optional parts (pip extras), and one sentence instead of a traceback when one is missing.

A plain ``pip install clew`` gives the core SDK: runs, metrics, registry, lineage and capture on
the embedded store, and the remote client. The server and web UI, the scikit-learn flavor, S3
and PostgreSQL each need an extra. The place that first imports such a part calls
``require_extra`` first, so a user who lacks it reads which command to run, not an
ImportError from deep inside a dependency.
"""

from __future__ import annotations

import importlib.util

from clew.errors import MissingExtraError

# The top-level modules each extra installs; the extra is missing when any of them is.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "server": ("fastapi", "uvicorn", "jinja2"),
    "sklearn": ("sklearn",),
    "s3": ("s3fs", "botocore"),
    "postgres": ("psycopg",),
    "monitor": ("scipy",),
    "dask": ("dask", "distributed"),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "onnx": ("onnx", "onnxruntime"),
    "torch": ("torch",),
    "cards": ("fpdf",),
    "exports": ("openpyxl",),
    "openlineage": ("openlineage",),
}


def require_extra(extra: str, feature: str) -> None:
    """Raise ``MissingExtraError`` naming the pip command unless ``extra`` is installed.

    ``feature`` is what the user asked for, as the sentence's subject (``"clew ui"``). Looks
    the modules up without importing them, so the check costs nothing when the extra is there.
    """
    missing = [module for module in EXTRA_MODULES[extra] if not _installed(module)]
    if missing:
        raise MissingExtraError(f"{feature} needs the {extra} extra: pip install 'clew[{extra}]'")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # imported already, with no spec (e.g. __main__-like modules)
        return True
