"""Every command declares a shared option the same way: one name, one default, one meaning.

The click commands are read back from the app, so a command that declares its own ``--seq-len``
with another default (the drift this guards against: 1024, 4096 and 128 in three commands)
fails here.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import typer

from archcost.cli import app
from archcost.cli import options as shared

# A shared name whose declaration may differ, and why.
DIFFERENT = {("calibrate", "--output"): "names the profile calibrate creates: required, .yaml",
             ("report", "--timeline"): "reads the trace plan/estimate --timeline wrote",
             ("validate", "--plan"): "optional: validate --infer runs a generation, no plan",
             ("infer", "--dtype"): "generation precisions: bf16 by default (what serving runs), "
                                   "fp8 for fp8 linears; no mixed-precision training modes",
             ("infer", "--gpus"): "one count: the GPUs the serving search fills",
             ("infer", "--hardware"): "one replica's GPU or cluster, h100-sxm by default",
             ("infer", "--runtime"): "its help names the serving runtimes (tensorrt-llm)",
             ("sweep", "--infer"): "prices generations; validate --infer times a real one"}


def _commands(group, prefix=""):
    for name, cmd in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, f"{path} ")
        else:
            yield path, cmd


COMMANDS = dict(_commands(typer.main.get_command(app)))


def _long(param) -> str | None:
    names = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")]
    return names[0] if names else None


def _options():
    """{option name: {command: click parameter}}"""
    out: dict[str, dict] = defaultdict(dict)
    for path, cmd in COMMANDS.items():
        for param in cmd.params:
            name = _long(param) if param.param_type_name == "option" else None
            if name:
                out[name][path] = param
    return out


OPTIONS = _options()
SHARED = {name: cmds for name, cmds in OPTIONS.items() if len(cmds) > 1}


def _type(param) -> str:
    """The value type as declared (recent typer keeps the annotation; older, a click type)."""
    descriptor = getattr(param, "type_descriptor", None)
    return str(descriptor.annotation) if descriptor is not None else param.type.name


def _declaration(param):
    return dict(default=param.default, required=param.required, flag=param.is_flag,
                multiple=param.multiple, type=_type(param), help=param.help,
                bounds=(getattr(param, "min", None), getattr(param, "max", None)),
                names=sorted(o for o in (*param.opts, *param.secondary_opts)))


def test_every_command_is_read_back():
    assert {"analyze", "infer", "plan", "estimate", "validate", "sweep", "report", "diff", "ci",
            "calibrate", "profiles list", "profiles show"} == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(SHARED))
def test_a_shared_option_has_one_declaration(name):
    seen = {cmd: _declaration(p) for cmd, p in SHARED[name].items()
            if (cmd, name) not in DIFFERENT}
    first_cmd, first = next(iter(seen.items()))
    for cmd, decl in seen.items():
        # the old spelling --cluster is kept only where it was documented
        names = [n for n in decl["names"] if n != "--cluster"]
        first_names = [n for n in first["names"] if n != "--cluster"]
        assert {**decl, "names": names} == {**first, "names": first_names}, (cmd, first_cmd)


def test_the_options_a_user_meets_first_are_shared_with_their_defaults():
    expect = {"--seq-len": shared.SEQ_LEN, "--dtype": shared.DTYPE,
              "--optimizer": shared.OPTIMIZER, "--hardware": None, "--gpus": None,
              "--usable-memory": shared.USABLE_MEMORY, "--json": False, "--markdown": False,
              "--output": None, "--set": None, "--top": shared.TOP, "--gbs": None,
              "--objective": shared.OBJECTIVE, "--plan": None, "--device": shared.DEVICE,
              "--nproc": shared.NPROC, "--timeout": shared.TIMEOUT_S, "--debug": False}
    for name, default in expect.items():
        assert name in SHARED, f"{name} is declared by one command only"
        for cmd, param in SHARED[name].items():
            if (cmd, name) not in DIFFERENT:
                assert param.default == default, (cmd, name, param.default)
    # the options of tracing and planning commands, present in each of them
    for cmd in ("analyze", "plan", "estimate", "validate", "sweep"):
        for name in ("--seq-len", "--set", "--dtype", "--optimizer", "--hardware", "--json",
                     "--output", "--debug"):
            assert cmd in OPTIONS[name], (cmd, name)
    for cmd in ("analyze", "plan", "estimate", "sweep"):
        assert cmd in OPTIONS["--usable-memory"], cmd
    for cmd in ("sweep", "diff", "report"):
        assert cmd in OPTIONS["--markdown"] and OPTIONS["--markdown"][cmd].is_flag, cmd
    for cmd in ("plan", "sweep", "profiles show"):
        assert cmd in OPTIONS["--gpus"] and "int" not in _type(OPTIONS["--gpus"][cmd]), cmd


def test_cluster_is_the_old_spelling_of_hardware_where_it_was_documented():
    for cmd in ("plan", "estimate", "sweep"):
        assert "--cluster" in OPTIONS["--hardware"][cmd].opts
    for cmd in ("analyze", "validate"):
        assert "--cluster" not in OPTIONS["--hardware"][cmd].opts
    assert "--cluster" not in OPTIONS  # never an option of its own


def test_the_documented_gbs_default_is_about_4m_tokens():
    for s in (128, 1024, 4096, 8192, 3000):
        gbs = shared.default_gbs(s)
        assert gbs & (gbs - 1) == 0  # a power of two
        assert 2**21 <= gbs * s <= 2**23
