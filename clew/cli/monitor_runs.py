"""``clew monitor run|schedule|schedules|unschedule|status|resolve``, through the SDK.

``run`` is for external schedulers (cron, Airflow): it checks one window once and prints the
same run when asked again (``--rerun`` runs it anew). These commands live on ``app``; the
``clew monitor`` group (clew/cli/monitor.py) carries them next to baselines and drift.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.domain.monitor_runs import MonitorRun

app = typer.Typer(help="Monitor runs per window, schedules, and violations.")

Ref = Annotated[str, typer.Argument(help="MODEL@ALIAS or MODEL/VERSION, e.g. churn@production.")]
WindowOption = Annotated[
    str | None,
    typer.Option("--window", "-w", help="The newest complete window of this length, e.g. 1h."),
]
StartOption = Annotated[str | None, typer.Option("--start", help="Window start (ISO 8601, UTC).")]
EndOption = Annotated[str | None, typer.Option("--end", help="Window end (ISO 8601, exclusive).")]
LastOption = Annotated[
    int | None, typer.Option("--last", help="Only the newest N predictions (of the window).")
]


@app.command("run")
def run(
    ref: Ref,
    window: WindowOption = None,
    start: StartOption = None,
    end: EndOption = None,
    last: LastOption = None,
    rerun: Annotated[
        bool, typer.Option("--rerun", help="Run the window again instead of reusing its run.")
    ] = False,
    margin: Annotated[
        float, typer.Option("--margin", help="Allowed drop from the training metrics.")
    ] = 0.05,
    format: FormatOption = Format.table,
) -> None:
    """Run the checks over one window, once; the same window again prints its first run."""
    quality = clew.QualitySpec(margin=margin)
    result = clew.run_monitor(
        ref, window=window, start=start, end=end, last=last, rerun=rerun, quality=quality
    )
    if format is Format.json:
        output.print_json(result.to_dict())
        return
    _print_run(result)


def _print_run(result: MonitorRun) -> None:
    reused = " (reused: this window already ran; --rerun runs it again)" if result.reused else ""
    console.print(
        f"monitor run {result.id} of {result.window.key}: {result.rows} predictions, "
        f"{result.violations} violation(s){reused}; lineage run {result.run_id}"
    )
    if result.action is not None:
        console.print(f"policy action: {result.action}")
    for report in result.reports:
        figures = {k: v for k, v in report.metrics.items() if isinstance(v, int | float)}
        console.print(output.key_values(figures, report.check, "figure"))
        for violation in report.violations:
            console.print(f"violation: {output.cell(violation.description)}")


@app.command("schedule")
def schedule(
    ref: Ref,
    cron: Annotated[str, typer.Option("--cron", help='Five-field cron (UTC), e.g. "0 * * * *".')],
    window: Annotated[str, typer.Option("--window", "-w", help="Window length.")] = "1h",
    format: FormatOption = Format.table,
) -> None:
    """Have `clew server` run the monitor at each cron time over the window before it."""
    item = clew.schedule_monitor(ref, cron, window)
    if format is Format.json:
        output.print_json(item.to_dict())
        return
    console.print(f"scheduled {item.id}: {item.target} at '{item.cron}' over {window}")


@app.command("schedules")
def schedules(
    model: Annotated[str | None, typer.Argument(help="Only this model's schedules.")] = None,
    format: FormatOption = Format.table,
) -> None:
    """Every monitor schedule (of MODEL)."""
    rows = [item.to_dict() for item in clew.monitor_schedules(model)]
    if format is Format.json:
        output.print_json({"schedules": rows})
        return
    columns = ("id", "target", "cron", "window_ms", "created_by", "created_at")
    console.print(output.table(columns, ([row[c] for c in columns] for row in rows), "schedules"))


@app.command("unschedule")
def unschedule(
    schedule_id: Annotated[str, typer.Argument(help="The id, from `clew monitor schedules`.")],
) -> None:
    """Delete a schedule; the windows it ran keep their runs."""
    clew.unschedule_monitor(schedule_id)
    console.print(f"deleted monitor schedule {schedule_id}")


@app.command("status")
def status(ref: Ref, format: FormatOption = Format.table) -> None:
    """The version's status, open violations, newest monitor runs and schedules."""
    found: dict[str, Any] = clew.monitor_status(ref)
    if format is Format.json:
        output.print_json(found)
        return
    console.print(f"{found['ref']}: {found['status']}")
    for item in found["open_violations"]:
        console.print(f"open violation ({item['action']}): {output.cell(item['description'])}")
    columns = ("id", "window_key", "attempt", "rows", "violations", "action", "created_at")
    runs = ([row[c] for c in columns] for row in found["runs"])
    console.print(output.table(columns, runs, "monitor runs (newest first)"))


@app.command("resolve")
def resolve(
    ref: Ref,
    comment: Annotated[
        str, typer.Option("--comment", "-m", help="Why it is resolved (kept in the audit trail).")
    ],
    format: FormatOption = Format.table,
) -> None:
    """Lift the version's open violations (those needing a fresh approval stay)."""
    event = clew.resolve_violation(ref, comment)
    if format is Format.json:
        output.print_json(event.to_dict())
        return
    console.print(f"{event.model}/{event.version}: violations resolved by {event.actor}")
