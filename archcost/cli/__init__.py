"""The ``archcost`` command line: parses, calls, prints; no cost logic lives here."""

from __future__ import annotations

import typer

from archcost.cli import analyze, calibrate, ci, infer, plan, profiles, report, sweep, validate
from archcost.cli.common import OneLineErrors

app = typer.Typer(
    cls=OneLineErrors,
    help="Architecture cost model for PyTorch training: compute, memory and communication.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is plain text: "[tool.archcost.runs]" stays, flags show no type
)


@app.callback()
def _root() -> None:
    """Architecture cost model for PyTorch training: compute, memory and communication."""


analyze.register(app)
infer.register(app)
plan.register(app)
validate.register(app)
sweep.register(app)
report.register(app)
calibrate.register(app)
ci.register(app)
app.add_typer(profiles.app, name="profiles",
              short_help="The bundled GPU and cluster profiles, or your own YAML files.")


def main() -> None:
    app()
