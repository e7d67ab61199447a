"""``archcost ci``: run the project's declared reports, diff them against the committed
baselines, print a table per run (and write the Markdown summary with ``--summary``); exit 1
on a regression past a threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archcost.cli.common import DebugOpt, err_console, out_console, reports_errors
from archcost.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("ci",
                short_help="Run the declared reports and diff them with the baselines.")(ci)


@reports_errors
def ci(
    config: Annotated[str, typer.Option("--config", help="pyproject.toml with a "
                                        "[tool.archcost] table.")] = "pyproject.toml",
    update_baselines: Annotated[bool, typer.Option("--update-baselines", help="Rewrite the "
                                                   "baselines with this run's reports.")] = False,
    out_dir: Annotated[str, typer.Option("--out-dir", help="Where this run's reports (JSON and "
                                         "Markdown) go.")] = "build/archcost-ci",
    summary: Annotated[str | None, typer.Option("--summary", help="Write the Markdown "
                                                "summary here (e.g. $GITHUB_STEP_SUMMARY).")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only these names "
                                                   "(repeatable).")] = None,
    debug: DebugOpt = False,
) -> None:
    """Run every [[tool.archcost.runs]] entry, write deterministic reports, diff them with the
    baselines in reports_dir. Exit 0: no regression; 1: a watched metric regressed past its
    threshold; 2: bad configuration or a missing baseline."""
    from archcost.ci import canonical, canonical_json, load_config, produce
    from archcost.io import atomic_write_text
    from archcost.report.diff import diff_documents
    from archcost.report.diff import to_markdown as diff_markdown
    from archcost.report.document import check_document, load_document
    from archcost.report.markdown import to_markdown

    cfg = load_config(Path(config))
    runs = [r for r in cfg.runs if not only or r.name in only]
    if only and len(runs) != len(set(only)):
        known = ", ".join(r.name for r in cfg.runs)
        raise ConfigError(f"--only {', '.join(only)}: not all are run names; names: {known}")
    out = Path(out_dir)
    if not out.is_absolute():
        out = cfg.root / out
    out.mkdir(parents=True, exist_ok=True)
    cfg.reports_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# archcost CI", "", "| run | kind | status | regressions |", "|---|---|---|---|"]
    details: list[str] = []
    table: list[tuple[str, str, str, str]] = []
    changed = []
    worst = 0
    for run in runs:
        with err_console.status(f"{run.name}: {run.kind} {Path(run.model).name}",
                                spinner="dots"):
            doc = check_document(canonical(produce(run)), f"run {run.name}'s report",
                                 fix="archcost wrote a document its own schema refuses: "
                                     "report this bug")
        text = canonical_json(doc)
        atomic_write_text(out / f"{run.name}.json", text)
        atomic_write_text(out / f"{run.name}.md", to_markdown(doc))
        baseline = cfg.reports_dir / f"{run.name}.json"
        if update_baselines:
            atomic_write_text(baseline, text)
            lines.append(f"| {run.name} | {run.kind} | baseline written | |")
            table.append((run.name, run.kind, "baseline written", ""))
            continue
        if not baseline.is_file():
            raise ConfigError(f"no baseline {baseline.relative_to(cfg.root)} for run "
                              f"{run.name!r}: run archcost ci --update-baselines and commit it")
        base = load_document(baseline, fix="regenerate it with archcost ci "
                                           "--update-baselines and commit it")
        result = diff_documents(base, doc, fail_above=run.fail_above if run.fail_above
                                is not None else cfg.fail_above, metrics=run.metrics)
        regressions = [r.metric for r in result.regressions]
        status = "regressed" if regressions else ("identical" if base == doc else "ok")
        worst = max(worst, result.exit_code)
        lines.append(f"| {run.name} | {run.kind} | {status} | {', '.join(regressions)} |")
        table.append((run.name, run.kind, status, ",".join(regressions)))
        if base != doc:
            details += ["", f"## {run.name}", "", diff_markdown(result)]
            changed.append(result)
    text = "\n".join(lines + details) + "\n"
    if summary:
        atomic_write_text(summary, text)
    _render(table, changed, summary)
    raise typer.Exit(worst)


def _render(table, changed, summary: str | None) -> None:
    """The terminal view: one row per run, then the comparison of each run that changed (the
    Markdown summary goes to --summary)."""
    from archcost.cli.layout import Col, Grid, say
    from archcost.cli.report import _render as render_diff

    g = Grid("archcost ci", [Col("run", "left", "list", key=True), Col("kind", "left"),
                             Col("status", "left"), Col("regressions", "left", "list")])
    for name, kind, status, regressions in table:
        g.row(name, kind, status, regressions,
              style="bold red" if status == "regressed" else None)
    g.print(out_console)
    for result in changed:
        out_console.print()
        render_diff(result, out_console)
    if summary:
        say(out_console, f"wrote the Markdown summary to {summary}")
