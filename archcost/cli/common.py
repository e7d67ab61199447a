"""What every command shares: error reporting, consoles, output files."""

from __future__ import annotations

import functools
import json
import traceback
from typing import Annotated, Any

import typer
from rich.console import Console

from archcost.errors import ArchcostError
from archcost.io import write_json

out_console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
RuntimeOpt = Annotated[str, typer.Option(
    "--runtime", help="Software stack that runs the model: a runtime profile name or file "
    "(archcost profiles list): eager (PyTorch as written), torchtitan, torchtitan-compile, "
    "fsdp, deepspeed, megatron, megatron-2022.")]


def reports_errors(fn):
    """Turn ArchcostError into one line on stderr and exit 2; other exceptions into exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = bool(kwargs.get("debug"))
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ArchcostError as exc:
            if debug:
                traceback.print_exc()
            for line in str(exc).splitlines() or [""]:  # one line per error (profile readers)
                err_console.print(f"[bold red]error:[/] {line}", markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # a bug in archcost: say so plainly
            if debug:
                traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0]
            err_console.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {first} "
                "(rerun with --debug for the traceback and report it)",
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def emit(doc: dict[str, Any], as_json: bool, output: str | None) -> None:
    """Write ``doc`` to ``output`` (atomically) and/or print it as JSON."""
    if output:
        write_json(output, doc)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
