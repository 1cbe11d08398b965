"""``clew monitor baseline ...`` and ``clew monitor check``: baselines, data quality and drift.

They go through the SDK (the default client), so they work on a store directory, a database
URL or a clew server alike. ``monitor_app`` is the one ``monitor`` group; the runner's commands
(``run``, ``schedule``, ``status``) join it.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

import clew
from clew.cli import monitor_runs, output
from clew.cli.output import Format, FormatOption, console
from clew.domain.baselines import Baseline
from clew.domain.monitoring import CheckReport

monitor_app = typer.Typer(
    help="Model monitoring: baselines, checks, monitor runs, schedules and violations.",
    no_args_is_help=True,
)
baseline_app = typer.Typer(
    help="Baselines: SageMaker statistics.json and constraints.json of a model version.",
    no_args_is_help=True,
)
monitor_app.add_typer(baseline_app, name="baseline")
# The runner's commands (run, schedule, schedules, unschedule, status, resolve) join this group.
monitor_app.registered_commands.extend(monitor_runs.app.registered_commands)

RefArgument = Annotated[str, typer.Argument(help="The model version: churn/3 or churn@production.")]


class Check(StrEnum):
    drift = "drift"
    data_quality = "data-quality"
    all = "all"


@baseline_app.command("create")
def create(
    ref: RefArgument,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", help="A dataset artifact ref; default: the training data in lineage."
        ),
    ] = None,
    prediction: Annotated[
        str | None, typer.Option("--prediction", help="The dataset column holding the output.")
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Build the version's baseline: statistics and suggested constraints."""
    baseline = clew.get_client().monitoring.create_baseline(ref, dataset, prediction=prediction)
    _print_baseline(baseline, format)


@baseline_app.command("show")
def show(ref: RefArgument, format: FormatOption = Format.table) -> None:
    """The version's baseline and its latest constraints."""
    _print_baseline(clew.get_client().monitoring.baseline(ref), format)


@baseline_app.command("export")
def export(
    ref: RefArgument,
    directory: Annotated[
        Path, typer.Argument(help="Where statistics.json and constraints.json go.")
    ],
) -> None:
    """Write the baseline as SageMaker Model Monitor files."""
    statistics, constraints = clew.get_client().monitoring.export_baseline(ref, directory)
    console.print(f"wrote {statistics} and {constraints}")


@baseline_app.command("import")
def import_files(
    ref: RefArgument,
    statistics: Annotated[
        Path, typer.Option("--statistics", exists=True, dir_okay=False, help="statistics.json")
    ],
    constraints: Annotated[
        Path | None,
        typer.Option("--constraints", exists=True, dir_okay=False, help="constraints.json"),
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Adopt SageMaker Model Monitor files as the version's baseline."""
    baseline = clew.get_client().monitoring.import_baseline(ref, statistics, constraints)
    _print_baseline(baseline, format)


@baseline_app.command("constraints")
def replace_constraints(
    ref: RefArgument,
    constraints: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A whole constraints.json.")
    ],
    format: FormatOption = Format.table,
) -> None:
    """Replace the constraints with a file: a new, audited revision."""
    baseline = clew.get_client().monitoring.import_constraints(ref, constraints)
    _print_baseline(baseline, format)


@baseline_app.command("edit")
def edit(
    ref: RefArgument,
    feature: Annotated[str, typer.Argument(help="The feature whose constraint changes.")],
    drift_metric: Annotated[
        str | None, typer.Option("--drift-metric", help="psi, ks, ks_pvalue, wasserstein, ...")
    ] = None,
    drift_threshold: Annotated[float | None, typer.Option("--drift-threshold")] = None,
    completeness: Annotated[float | None, typer.Option("--completeness", min=0, max=1)] = None,
    lower_bound: Annotated[float | None, typer.Option("--lower-bound")] = None,
    upper_bound: Annotated[float | None, typer.Option("--upper-bound")] = None,
    allowed: Annotated[
        list[str] | None,
        typer.Option("--allowed-value", help="An allowed categorical value (repeatable)."),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit trail.")] = "",
    format: FormatOption = Format.table,
) -> None:
    """Change one feature's constraints: a new, audited revision that later checks use."""
    fields: dict[str, Any] = {
        "drift_metric": drift_metric,
        "drift_threshold": drift_threshold,
        "completeness": completeness,
        "lower_bound": lower_bound,
        "upper_bound": upper_bound,
        "allowed_values": allowed,
    }
    changes = {key: value for key, value in fields.items() if value is not None}
    if not changes:
        output.fail("name at least one change, e.g. --drift-threshold 0.3.")
    baseline = clew.get_client().monitoring.edit_constraints(ref, {feature: changes}, reason)
    _print_baseline(baseline, format)


@monitor_app.command("check")
def check(
    ref: RefArgument,
    kind: Annotated[Check, typer.Option("--check", "-c", help="drift, data-quality or all.")] = (
        Check.all
    ),
    last: Annotated[
        int | None, typer.Option("--last", "-n", min=1, help="The newest N predictions.")
    ] = None,
    start: Annotated[
        datetime | None, typer.Option("--start", help="Window start (inclusive, ISO time).")
    ] = None,
    end: Annotated[
        datetime | None, typer.Option("--end", help="Window end (exclusive, ISO time).")
    ] = None,
    violations_file: Annotated[
        Path | None,
        typer.Option("--violations", help="Also write SageMaker's constraint_violations.json."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with status 3 when a constraint is broken.")
    ] = False,
    dask_scheduler: Annotated[
        str | None,
        typer.Option(
            "--dask-scheduler",
            help="Read the window on this Dask cluster, e.g. tcp://10.0.0.5:8786 (clew[dask]).",
        ),
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Check a window of the version's captured predictions against its baseline."""
    monitoring = clew.get_client().monitoring
    bounds: dict[str, Any] = {"last_n": last, "start": start, "end": end}
    if kind is Check.all:
        reports = monitoring.check(ref, **bounds, scheduler=dask_scheduler)
    elif kind is Check.drift:
        reports = [monitoring.check_drift(ref, **bounds, scheduler=dask_scheduler)]
    else:
        reports = [monitoring.check_data_quality(ref, **bounds, scheduler=dask_scheduler)]
    if violations_file is not None:
        merged = [v for report in reports for v in report.constraint_violations()["violations"]]
        violations_file.write_text(json.dumps({"violations": merged}, indent=2))
    if format is Format.json:
        output.print_json({"reports": [report.to_dict() for report in reports]})
    else:
        for report in reports:
            _print_report(report)
    if strict and any(not report.passed for report in reports):
        raise typer.Exit(3)


def _print_baseline(baseline: Baseline, format: Format) -> None:
    if format is Format.json:
        output.print_json(baseline.to_dict())
        return
    constraints = {f["name"]: f for f in baseline.constraints.get("features", [])}
    rows = []
    for feature in baseline.statistics.get("features", []):
        rule = constraints.get(feature["name"], {})
        overrides = rule.get("monitoringConfigOverrides", {})
        stats = feature.get("numerical_statistics") or feature.get("string_statistics") or {}
        rows.append(
            [
                feature["name"],
                feature.get("inferred_type"),
                stats.get("common", {}).get("num_present"),
                rule.get("completeness"),
                overrides.get("drift_metric", "default"),
                overrides.get("drift_threshold"),
            ]
        )
    title = (
        f"baseline of {baseline.model}/{baseline.version} "
        f"(constraints revision {baseline.constraints_version})"
    )
    columns = ["feature", "type", "present", "completeness", "drift metric", "threshold"]
    console.print(output.table(columns, rows, title))


def _print_report(report: CheckReport) -> None:
    verdict = "passed" if report.passed else f"{len(report.violations)} violation(s)"
    console.print(f"{report.check} over {report.rows} predictions: {verdict}")
    if report.check == "drift":
        rows = [
            [
                name,
                f.get("metric"),
                f.get(f.get("metric", ""), None),
                f.get("threshold"),
                f.get("drifted"),
            ]
            for name, f in report.metrics.get("features", {}).items()
        ]
        console.print(output.table(["feature", "metric", "value", "threshold", "drifted"], rows))
    for violation in report.violations:
        console.print(
            f"  [red]{violation.constraint_check_type}[/] {violation.feature_name}: "
            f"{violation.description}"
        )
