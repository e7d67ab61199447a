"""``archcost ci``: run the project's declared reports, diff them against the committed
baselines, print a table per run (and write the Markdown summary with ``--summary``); exit 1
on a regression past a threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archcost.cli.common import check_outputs, out_console, reports_errors, spinner
from archcost.cli.options import DebugOpt
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
    from archcost.io import same_target, write_files
    from archcost.report.diff import diff_documents
    from archcost.report.diff import to_markdown as diff_markdown
    from archcost.report.document import check_document
    from archcost.report.markdown import to_markdown

    cfg = load_config(Path(config))
    runs = [r for r in cfg.runs if not only or r.name in only]
    if only and len(runs) != len(set(only)):
        known = ", ".join(r.name for r in cfg.runs)
        raise ConfigError(f"--only {', '.join(only)}: not all are run names; names: {known}")
    # an unset $GITHUB_STEP_SUMMARY (outside GitHub Actions) asks for no summary
    check_outputs(summary=summary or None, inputs={"the --config file": config})
    out = Path(out_dir)
    if not out.is_absolute():
        out = cfg.root / out
    for folder, option in ((out, "--out-dir"), (cfg.reports_dir, "reports_dir")):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{option} {folder}: is a file, not a folder; choose another path")
    if not update_baselines and same_target(out, cfg.reports_dir):
        raise ConfigError(f"--out-dir {out_dir}: is reports_dir, where the baselines are; this "
                          "run's reports would replace them; choose another folder (or pass "
                          "--update-baselines to make them the baselines)")
    reports = [f for run in runs for f in _report_paths(out, cfg.reports_dir, run.name)]
    if summary and any(same_target(summary, f) for f in reports):
        raise ConfigError(f"--summary {summary}: is a report this run writes; give the "
                          "summary its own file")
    baselines = {} if update_baselines else {run.name: _baseline(cfg, run) for run in runs}
    docs = {}
    for run in runs:  # every report first: a failing run leaves no file behind
        with spinner(False, f"{run.name}: {run.kind} {Path(run.model).name}"):
            docs[run.name] = check_document(
                canonical(produce(run)), f"run {run.name}'s report",
                fix="archcost wrote a document its own schema refuses: report this bug")
    files: dict[Path, str] = {}
    lines = ["# archcost CI", "", "| run | kind | status | regressions |", "|---|---|---|---|"]
    details: list[str] = []
    table: list[tuple[str, str, str, str]] = []
    changed = []
    worst = 0
    for run in runs:
        doc = docs[run.name]
        text = canonical_json(doc)
        report, markdown, baseline = _report_paths(out, cfg.reports_dir, run.name)
        files[report] = text
        files[markdown] = to_markdown(doc)
        if update_baselines:
            files[baseline] = text
            lines.append(f"| {run.name} | {run.kind} | baseline written | |")
            table.append((run.name, run.kind, "baseline written", ""))
            continue
        base = baselines[run.name]
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
        files[Path(summary)] = text
    for folder in (out, cfg.reports_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create folder {folder}: {exc.strerror or exc}; choose "
                              "another --out-dir or reports_dir") from None
    write_files(files)
    _render(table, changed, summary)
    raise typer.Exit(worst)


def _report_paths(out: Path, reports_dir: Path, name: str) -> tuple[Path, Path, Path]:
    """The files run ``name`` writes, (its report, its Markdown, its baseline): one place for
    their names, which the ``--summary`` check and the writing both read."""
    return out / f"{name}.json", out / f"{name}.md", reports_dir / f"{name}.json"


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


def _baseline(cfg, run) -> dict:
    """The committed baseline of ``run``, read (and checked against its schema) before anything
    runs."""
    from archcost.report.document import load_document

    baseline = _report_paths(cfg.root, cfg.reports_dir, run.name)[2]
    if not baseline.is_file():
        where = baseline.relative_to(cfg.root) if baseline.is_relative_to(cfg.root) else baseline
        raise ConfigError(f"no baseline {where} for run {run.name!r}: run archcost ci "
                          "--update-baselines and commit it")
    return load_document(baseline, fix="regenerate it with archcost ci --update-baselines and "
                                       "commit it")
