"""What every command shares: error reporting, consoles, output files.

Every way a command can fail on its input ends the same: one line on stderr, exit code 2, no
traceback (``--debug`` shows it), no file left behind. ``reports_errors`` does it for errors
raised while a command runs (``ArchcostError``, a model file's ``sys.exit``; Ctrl-C is one line
and exit 130; a reader that closed the pipe, ``archcost ... | head``, is a quiet exit 141);
``OneLineErrors`` for what the command line parser refuses before that (a bad
integer, an unknown option, a missing argument), which click would print as a usage box.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from archcost.errors import ArchcostError, ConfigError, ProfileError
from archcost.io import write_files

try:  # recent typer carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import ClickException



class _Console(Console):
    """rich's Console, whose broken pipe reaches ``reports_errors`` as the ``BrokenPipeError``
    it is: rich's own handler raises ``SystemExit(1)``, which reads as a model file's
    ``sys.exit``."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


out_console = _Console(highlight=False)
err_console = _Console(stderr=True, highlight=False)

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader went away


def _error_line(text: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(text)}", markup=True, soft_wrap=True,
                      emoji=False)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


class OneLineErrors(TyperGroup):
    """The root command: what the parser refuses is one ``error:`` line on stderr, exit 2.

    click (and typer's rich formatting of it) prints a usage line, a hint and a boxed message;
    a script reading stderr, or a user at 80 columns, gets one line naming the option, the
    problem and where the help is. A missing command or argument with ``no_args_is_help``
    still prints the help.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except ClickException as exc:
            _refuse(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ClickException as exc:
            _refuse(exc)


def _refuse(exc: ClickException):
    if type(exc).__name__ == "NoArgsIsHelpError":  # `archcost` alone: the help, as click shows it
        raise exc
    ctx = getattr(exc, "ctx", None)
    where = f"; see {ctx.command_path} --help" if ctx is not None else ""
    _error_line(_one_line(exc.format_message()).rstrip(".") + where)
    raise typer.Exit(2)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again on the
    closed pipe (the idiom of Python's note on SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout has no file descriptor (a test runner's)
        pass
    finally:
        os.close(devnull)


def reports_errors(fn):
    """Turn ArchcostError into one line on stderr and exit 2, Ctrl-C into one line and exit
    130, a closed output pipe into a quiet exit 141, a model file's ``sys.exit`` into an
    error; other exceptions into exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = bool(kwargs.get("debug"))
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except BrokenPipeError:  # the reader went away (| head): end quietly
            _stdout_to_devnull()
            raise typer.Exit(BROKEN_PIPE) from None
        except ArchcostError as exc:
            if debug:
                traceback.print_exc()
            # a profile reader reports every error of a file, one line each
            lines = str(exc).splitlines() if isinstance(exc, ProfileError) else [str(exc)]
            for line in lines or [""]:
                _error_line(_one_line(line))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
            _error_line("interrupted (Ctrl-C); stopped without writing any output")
            raise typer.Exit(INTERRUPTED) from None
        except SystemExit as exc:  # archcost never calls sys.exit inside a command: user code did
            if debug:
                traceback.print_exc()
            _error_line(f"code run for this command called sys.exit({exc.code!r}) (a model file "
                        "must define functions, not exit); remove the call")
            raise typer.Exit(2) from None
        except Exception as exc:  # a bug in archcost: say so plainly
            if debug:
                traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0]
            err_console.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {escape(first)} "
                "(rerun with --debug for the traceback and report it)",
                soft_wrap=True, markup=True, emoji=False,
            )
            raise typer.Exit(1) from None

    return wrapper


def spinner(quiet: bool, text: str = "tracing"):
    """A status line on stderr (nothing when ``quiet``); ``.update(msg)`` on what it yields."""
    return contextlib.nullcontext() if quiet else err_console.status(text, spinner="dots")


def progress_bar(quiet: bool, *columns: str):
    """A transient progress bar on stderr, yielding a ``rich.progress.Progress``; None (and
    nothing printed) when ``quiet`` or when stderr is not a terminal, where a bar would only
    leave blank lines in a log."""
    if quiet or not err_console.is_terminal:
        return contextlib.nullcontext()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(*(TextColumn(c) for c in columns), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True)


def given(ctx, name: str) -> bool:
    """Whether option ``name`` came from the command line (or the environment), not its
    default."""
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return source is not None and source.name != "DEFAULT"


def model_inputs(model: str | None, hardware: str | None = None,
                 routing: str | None = None) -> dict[str, Path | str | None]:
    """What a command that runs a model reads, for ``check_outputs(inputs=...)``: the model
    file, a profile file given to ``--hardware`` and the file of ``--routing histogram=FILE``."""
    from archcost.hardware.profile import profile_file
    from archcost.loader import model_file
    from archcost.trace.assume import routing_file

    return {"the model file": model_file(model) if model else None,
            "the --hardware profile": profile_file(hardware) if hardware else None,
            "the --routing histogram": routing_file(routing) if routing else None}


def check_outputs(*, inputs: dict[str, Path | str | None] | None = None,
                  **paths: str | None) -> None:
    """Refuse, before any work, output paths no file can be written to (``o=path`` for ``-o``,
    ``graph=path`` for ``--graph``): an empty one, one no file can be created at, one that
    is a file the command reads (``inputs``: what it is -> path, e.g. ``{"the model file":
    ...}``) and one another output of the command names too."""
    from archcost.io import check_writable, same_file, same_target

    written: list[tuple[str, str]] = []  # (option, path) of the outputs checked before
    for name, path in paths.items():
        if path is None:
            continue
        option = "-o" if name == "o" else f"--{name.replace('_', '-')}"
        if not path.strip():
            raise ConfigError(f"{option} {path!r}: an empty path; give the name of a file to "
                              f"write, or leave {option} out")
        twin = next((o for o, p in written if same_target(path, p)), None)
        if twin is not None:
            raise ConfigError(f"{option} {path}: {twin} writes that file too; give each output "
                              "its own file")
        written.append((option, path))
        check_writable(path, option)
        read = next((what for what, i in (inputs or {}).items()
                     if i is not None and same_file(path, i)), None)
        if read is not None:
            raise ConfigError(f"{option} {path}: is {read}, which this command reads; write to "
                              "another file")


def document_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


def emit(doc: dict[str, Any], as_json: bool, output: str | None,
         extra: dict[str, str] | None = None) -> None:
    """Write ``doc`` to ``output`` and the ``extra`` files (path -> text), all or none, then
    print the document when ``as_json``."""
    files = {**({output: document_text(doc)} if output else {}), **(extra or {})}
    write_files({Path(p): text for p, text in files.items()})
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
