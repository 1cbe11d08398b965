"""Helpers for the serving, batch and shadow tests: small registered models and a real
``clew serve`` process whose output is read line by line."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import clew


def iris_frame() -> tuple[pd.DataFrame, np.ndarray]:
    features, target = load_iris(return_X_y=True, as_frame=True)
    features.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return features, np.asarray(target)


def register(client: clew.Client, name: str = "iris", model: Any = None) -> str:
    """Train (LogisticRegression unless ``model`` is given) on iris in a run, log, register;
    the new version's ref."""
    features, target = iris_frame()
    with client.start_run("iris", "train") as run:
        run.log_input(features.assign(target=target), name="iris-train")
        fitted = (model or LogisticRegression(max_iter=300)).fit(features, target)
        artifact = run.log_model(fitted, name=f"{name}-model")
    return client.register_model(artifact, name).ref


def challenger() -> DecisionTreeClassifier:
    """A deliberately weaker model, so champion and challenger disagree on some rows."""
    return DecisionTreeClassifier(max_depth=1, random_state=0)


def clew_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("clew")), *args]


@dataclass
class Served:
    """A running ``clew serve``: its URL, the lines it printed so far and the process."""

    url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def clew_serve(*args: str, port: int, wait_for: str = "serving") -> Iterator[Served]:
    """``clew serve ARGS --port PORT`` in its own process, yielded once it printed a line
    containing ``wait_for``; stopped with Ctrl-C (SIGINT) afterwards."""
    process = subprocess.Popen(
        clew_command("serve", *args, "--port", str(port)),
        env={**os.environ, "COLUMNS": "300"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process, lines), daemon=True).start()
    served = Served(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 180
    try:
        while not any(wait_for in line for line in served.lines):
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"clew serve printed no {wait_for!r} in 180 s: {served.output()}")
            if line is None:
                pytest.fail(f"clew serve exited early: {served.output()}")
            served.lines.append(line)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        while True:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            served.lines.append(line)


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line.rstrip("\n"))
    lines.put(None)
