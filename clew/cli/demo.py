"""``clew demo``: the whole thread, made for real in about ten seconds.

It builds a throwaway git repository holding two scripts (``demo_project/prepare.py`` and
``train.py``), runs them as a data engineer and a data scientist would (each in a fresh
client, as separate processes would be), registers the model, stores a policy, has a second
user approve it, promotes it to production, serves a batch of predictions through the loaded
model and traces one prediction back to its data. Nothing is simulated: every record goes
into the configured store (``CLEW_HOME`` / ``CLEW_URI``), so the commands it prints at the end
explore what it made.
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.panel import Panel

import clew
from clew.cli import output, trace
from clew.cli.output import console
from clew.client import provenance
from clew.client.default import reset
from clew.errors import ClewError, PolicyError
from clew.extras import require_extra

PROJECT = Path(__file__).with_name("demo_project")
MODEL = "tumor-classifier"
REMOTE = "https://github.com/acme-health/tumor-screening.git"
BATCH = 25
STEPS = 9
POLICY = """\
# Who may approve tumor-classifier versions, and what production requires.
roles:
  validators: [{validator}, {creator}]
approvals:
  roles: [validators]
  required: 1
  separation_of_duties: true
production:
  aliases: [production]
  evidence:
    metrics: ["auc >= 0.95", "accuracy >= 0.9"]
"""


@dataclass
class Made:
    """What the demo recorded, for the summary and the commands it prints."""

    repo: Path
    creator: str
    validator: str
    runs: dict[str, str] = field(default_factory=dict)
    version: str = ""
    prediction_ids: list[str] = field(default_factory=list)


def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir", help="Where to create the demo's git repository (default: a temp dir)."
        ),
    ] = None,
) -> None:
    """Train, register, approve, promote, serve and trace a scikit-learn model end to end."""
    require_extra("sklearn", "clew demo")
    started = time.perf_counter()
    workspace = Path(workdir or tempfile.mkdtemp(prefix="clew-demo-")).resolve()
    creator = clew.get_client().actor
    made = Made(workspace / "tumor-screening", creator, _second_user(creator))
    console.print(
        Panel(
            f"store      {output.cell(clew.get_client().uri)}\n"
            f"workspace  {output.cell(workspace)}\n"
            f"users      {output.cell(creator)} (data scientist), "
            f"{output.cell(made.validator)} (validator)",
            title="clew demo",
            title_align="left",
        )
    )
    with _inside(made.repo):
        _create_repository(made)
        _prepare(made)
        _train(made)
    _register(made)
    _set_policy(made)
    _approve(made)
    _promote(made)
    _serve(made)
    _trace(made)
    _explore(made, time.perf_counter() - started)


# --- the steps -----------------------------------------------------------------------------


def _create_repository(made: Made) -> None:
    _step(1, "a git repository with the data-preparation script")
    _git(made.repo, "init", "-q", "-b", "main")
    _git(made.repo, "remote", "add", "origin", REMOTE)
    (made.repo / ".gitignore").write_text("data/\n")
    shutil.copy(PROJECT / "prepare.py", made.repo / "prepare.py")
    _git(made.repo, "add", ".gitignore", "prepare.py")
    _git(made.repo, "commit", "-q", "-m", "Prepare the WDBC training data")
    _done(f"{made.repo} (origin {REMOTE})")


def _prepare(made: Made) -> None:
    _step(2, "data preparation run: prepare.py")
    scope = _run_script(made.repo / "prepare.py")
    run = scope["run"]
    made.runs["prepare"] = run.id
    _done(f"run:{run.id} read data_source:wdbc-measurements, wrote tumor-train and tumor-test")


def _train(made: Made) -> None:
    _step(3, "training run: train.py (committed by the data scientist)")
    shutil.copy(PROJECT / "train.py", made.repo / "train.py")
    _git(made.repo, "add", "train.py")
    _git(made.repo, "commit", "-q", "-m", "Train a scaled logistic regression")
    scope = _run_script(made.repo / "train.py")
    run = scope["run"]
    made.runs["train"] = run.id
    metrics = clew.get_run(run.id).metrics
    _done(
        f"run:{run.id} seed 42, auc {metrics['auc']:.4f}, accuracy {metrics['accuracy']:.4f}, "
        f"model {scope['model_artifact'].digest[:19]}…"
    )


def _register(made: Made) -> None:
    _step(4, f"register the model as {MODEL}")
    if clew.list_models().query("name == @MODEL").empty:
        clew.create_model(
            MODEL,
            description="Flags malignant tumours from cell-nucleus measurements.",
            risk_tier="high",
        )
    version = clew.register_model(
        f"run:{made.runs['train']}",
        MODEL,
        description="Scaled logistic regression trained by train.py.",
    )
    made.version = version.ref
    _done(f"{version.ref} -> {version.digest}")


def _set_policy(made: Made) -> None:
    _step(5, "store the governance policy")
    number = clew.set_policy(POLICY.format(validator=made.validator, creator=made.creator))
    _done(f"policy v{number}: validators approve, production needs auc >= 0.95, accuracy >= 0.9")


def _approve(made: Made) -> None:
    _step(6, f"approval by a second user ({made.validator})")
    try:
        clew.approve(made.version, "I built it and it looks fine to me.")
    except PolicyError as refused:
        _done(f"self-approval by {made.creator} refused: {output.cell(refused)}")
    else:
        raise ClewError(f"the policy let {made.creator} approve their own model; check it.")
    with _as_user(made.validator):
        clew.approve(
            made.version,
            "Reviewed metrics on the held-out split and the training data lineage.",
            evidence=["dataset:tumor-test"],
        )
    _done(f"{made.version} approved by {made.validator}")


def _promote(made: Made) -> None:
    _step(7, "promote to production")
    event = clew.promote(made.version, "production", "Initial release after validation.")
    _done(f"{MODEL}@production -> {event.model}/{event.version}")


def _serve(made: Made) -> None:
    _step(8, f"load {MODEL}@production and serve a batch of {BATCH} predictions")
    model = clew.load_model(f"{MODEL}@production")
    batch = _requests(made.repo)
    outputs, prediction_ids = model.predict_with_ids(batch)
    made.prediction_ids = list(prediction_ids)
    stats = clew.flush_captures()
    malignant = int((outputs == 0).sum())
    _done(
        f"{model.version.ref} answered {len(outputs)} requests ({malignant} flagged malignant); "
        f"{stats['captured']} captured and signed"
    )


def _trace(made: Made) -> None:
    _step(9, f"trace prediction {made.prediction_ids[0]}")
    trace.print_trace(clew.trace(made.prediction_ids[0]).to_dict())


def _explore(made: Made, seconds: float) -> None:
    home = clew.get_client().uri
    prefix = "" if _is_configured_store(home) else f"CLEW_HOME={home} "
    commands = [
        ("the runs", "clew runs list"),
        ("one run in full", f"clew runs show {made.runs['train']}"),
        ("what made the production model", f"clew lineage {MODEL}@production"),
        ("as a graph", f"clew lineage {MODEL}@production --format dot | dot -Tsvg > lineage.svg"),
        ("the model, versions and history", f"clew models show {MODEL}"),
        ("approvals and production readiness", f"clew status {made.version}"),
        ("the thread behind a prediction", f"clew trace {made.prediction_ids[-1]}"),
        ("serve it over HTTP", f"clew serve {MODEL}@production --port 8000"),
        ("the audit trail", "clew audit log --limit 20"),
        ("prove nothing was altered", "clew audit verify && clew verify"),
    ]
    lines = [f"[dim]# {what}[/dim]\n{prefix}{command}" for what, command in commands]
    console.print(
        Panel(
            "\n".join(lines),
            title=f"done in {seconds:.1f} s — explore what it made",
            title_align="left",
        )
    )


# --- helpers -------------------------------------------------------------------------------


def _step(number: int, text: str) -> None:
    console.print(f"\n[bold cyan][{number}/{STEPS}][/bold cyan] [bold]{text}[/bold]")


def _done(text: str) -> None:
    console.print(f"  [green]✓[/green] {text}")


def _second_user(creator: str) -> str:
    return "validator" if creator != "validator" else "second-validator"


def _is_configured_store(home: str) -> bool:
    """True when a plain ``clew ...`` in a new shell would open the same store."""
    return bool(os.environ.get("CLEW_URI") or os.environ.get("CLEW_HOME")) or (
        Path(home) == Path.home() / ".clew"
    )


def _requests(repo: Path) -> pd.DataFrame:
    """Incoming requests: the held-out rows the training run never saw, without labels."""
    test = pd.read_parquet(repo / "data" / "test.parquet")
    return test.drop(columns="target").head(BATCH)


def _run_script(script: Path) -> dict[str, Any]:
    """Run a committed script as ``python script.py`` would, in this process.

    Each script gets a fresh default client and capture cache, as a new process would, so
    its run records the commit it was run at and a permalink to itself.
    """
    provenance.refresh()
    reset()
    saved_argv = sys.argv
    sys.argv = [str(script)]
    try:
        return runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved_argv


def _git(repo: Path, *args: str) -> None:
    environment = {
        **os.environ,
        "GIT_AUTHOR_NAME": "clew demo",
        "GIT_AUTHOR_EMAIL": "demo@clew.invalid",
        "GIT_COMMITTER_NAME": "clew demo",
        "GIT_COMMITTER_EMAIL": "demo@clew.invalid",
    }
    result = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, env=environment, check=False
    )
    if result.returncode != 0:
        raise ClewError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}.")


@contextmanager
def _inside(repo: Path) -> Iterator[None]:
    """Work inside the demo repository, then return to where the user was."""
    if repo.exists() and any(repo.iterdir()):
        raise ClewError(f"{repo} already exists and is not empty; pass another --workdir.")
    repo.mkdir(parents=True, exist_ok=True)
    previous = Path.cwd()
    os.chdir(repo)
    try:
        yield
    finally:
        os.chdir(previous)
        provenance.refresh()


@contextmanager
def _as_user(user: str) -> Iterator[None]:
    """Act as another user (the embedded store identifies users by CLEW_USER)."""
    previous = os.environ.get("CLEW_USER")
    os.environ["CLEW_USER"] = user
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CLEW_USER", None)
        else:
            os.environ["CLEW_USER"] = previous
