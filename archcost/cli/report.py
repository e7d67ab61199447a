"""``archcost report RESULT.json`` (Markdown or a self-contained HTML page) and ``archcost diff
BASE.json HEAD.json`` (regression gate: exit 1 when a watched metric got worse past the
threshold, 2 on bad input)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archcost.cli.common import check_outputs, out_console, reports_errors
from archcost.cli.options import (
    FAIL_ABOVE,
    DebugOpt,
    JsonOpt,
    MarkdownOpt,
    OutputOpt,
    one_output,
)
from archcost.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("report", short_help="Render a result document as Markdown or HTML.")(report)
    app.command("diff", short_help="Compare two result documents; exit 1 on a "
                "regression.")(diff)


_FORMATS = ("md", "html")


def _format(fmt: str | None, output: str | None, markdown: bool) -> str:
    if markdown:
        if fmt is not None and _format(fmt, None, False) != "md":
            raise ConfigError(f"--markdown and --format {fmt}: choose one")
        return "md"
    if fmt is None:
        suffix = Path(output).suffix.lower() if output else ""
        return "html" if suffix in (".html", ".htm") else "md"
    value = fmt.strip().lower()
    value = {"markdown": "md", "htm": "html"}.get(value, value)
    if value not in _FORMATS:
        raise ConfigError(f"--format {fmt!r}: use md or html")
    return value


@reports_errors
def report(
    result: Annotated[str, typer.Argument(metavar="RESULT.json", help="A document written by "
                                          "analyze, plan, estimate, validate, sweep or "
                                          "infer with "
                                          "-o.",
                                          show_default=False)],
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="md (Markdown, e.g. for "
                                            "$GITHUB_STEP_SUMMARY) or html (one self-contained "
                                            "page with plots); default: html when -o ends in "
                                            ".html, else md.", show_default=False)] = None,
    markdown: MarkdownOpt = False,
    output: OutputOpt = None,
    timeline: Annotated[str | None, typer.Option("--timeline", help="Chrome trace of the "
                                                 "same plan (plan/estimate --timeline): the "
                                                 "pipeline timeline micro-batch by "
                                                 "micro-batch.", show_default=False)] = None,
    debug: DebugOpt = False,
) -> None:
    """Render a result document as Markdown or as an HTML page with plots (roofline, memory,
    time breakdowns, pipeline timeline, Pareto front, predicted vs measured, a sweep's step
    time against each parameter, heatmap and sensitivity)."""
    from archcost.io import atomic_write_text
    from archcost.report.document import chosen_estimate, load_document, load_trace
    from archcost.report.html import to_html
    from archcost.report.markdown import to_markdown
    from archcost.report.timeline import check_matches, from_trace

    kind = _format(fmt, output, markdown)
    check_outputs(o=output, inputs={"the document RESULT.json": result,
                                    "the --timeline trace": timeline})
    doc = load_document(result)
    tl = None
    if timeline:
        tl = from_trace(load_trace(timeline), source=Path(timeline).name)
        check_matches(tl, chosen_estimate(doc), timeline)
    text = to_html(doc, tl) if kind == "html" else to_markdown(doc, tl)
    if output:
        atomic_write_text(output, text)
        from archcost.cli.layout import say

        say(out_console, f"wrote {output}")
    else:
        typer.echo(text, nl=False)


@reports_errors
def diff(
    base: Annotated[str, typer.Argument(metavar="BASE.json", help="The reference document.",
                                        show_default=False)],
    head: Annotated[str, typer.Argument(metavar="HEAD.json", help="The document to check, of "
                                        "the same kind and model.", show_default=False)],
    fail_above: Annotated[str, typer.Option("--fail-above", help="Largest change for the "
                                            "worse a watched metric may show, relative to "
                                            "BASE (validation errors: in points).")] = FAIL_ABOVE,
    metrics: Annotated[list[str] | None, typer.Option("--metrics", help="Watched metrics, "
                                                      "comma-separated (globs allowed, e.g. "
                                                      "'error.*'); default: a set per kind.",
                                                      show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Compare documents of different "
                                        "models.")] = False,
    as_json: JsonOpt = False,
    markdown: MarkdownOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Compare two result documents of the same kind: exit 1 when a watched metric regressed
    past --fail-above, 0 otherwise, 2 on bad input."""
    import json

    from archcost.report.diff import diff_documents, to_markdown
    from archcost.report.document import load_document

    one_output(as_json, markdown)
    watched = None
    if metrics:
        watched = [m.strip() for item in metrics for m in item.split(",") if m.strip()]
    result = diff_documents(load_document(base), load_document(head), fail_above=fail_above,
                            metrics=watched, force=force)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif markdown:
        typer.echo(to_markdown(result), nl=False)
    else:
        _render(result)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


_STYLE = {"regressed": "bold red", "missing": "bold red", "invalid": "bold red",
          "worse": "yellow", "improved": "green", "new": "cyan",
          "gone": "cyan"}


def _render(result, console=None, max_rows: int = 15) -> None:
    from archcost.cli.layout import Col, Grid, say
    from archcost.report.diff import (
        STATUS_TEXT,
        format_change,
        format_delta,
        format_value,
        other_changes,
        summary,
    )

    console = console or out_console
    title = f"{result.kind}: {result.base_model}"
    if result.head_model != result.base_model:
        title += f" -> {result.head_model}"
    tab = Grid(title, [Col("metric", "left", "list", key=True), Col("base", wrap="words"),
                       Col("head", wrap="words"), Col("delta", wrap="words"), Col("change"),
                       Col("status", "left")])
    watched = [r for r in result.rows if r.watched]
    others = other_changes(result)
    for r in watched + others[:max_rows]:
        tab.row(r.metric, format_value(r.base, r.unit), format_value(r.head, r.unit),
                format_delta(r), format_change(r), STATUS_TEXT[r.status],
                style=_STYLE.get(r.status, "bold" if r.watched else None))
    tab.print(console)
    hidden = len(others) - min(len(others), max_rows)
    unchanged = sum(1 for r in result.rows if not r.watched and r.status == "same")
    extra = []
    if hidden:
        extra.append(f"{hidden} more changed metrics (--json or --markdown list them)")
    if unchanged:
        extra.append(f"{unchanged} other metrics unchanged")
    if extra:
        say(console, "; ".join(extra), style="dim")
    for note in result.notes:
        say(console, f"note: {note}")
    say(console, ("REGRESSION: " if result.regressions else "ok: ") + summary(result),
        style="bold red" if result.regressions else "green")
