"""MLflow, the peer for tracking and registry benchmarks, on a SQLite store in a temp dir.

MLflow is imported here only, so a benchmark that cannot find it (``uv run`` without
``--group bench``) fails with one clear line instead of a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any


def open_mlflow(directory: Path, experiment: str = "bench") -> tuple[Any, str]:
    """Point MLflow at ``directory/mlflow.db``; return its client and a fresh experiment id."""
    try:
        import mlflow
        from mlflow import MlflowClient
    except ImportError:
        sys.exit("MLflow is not installed: run with `uv run --group bench python ...`.")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{directory / 'mlflow.db'}")
    client = MlflowClient()
    experiment_id = client.create_experiment(
        experiment, artifact_location=(directory / "mlartifacts").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return client, experiment_id
