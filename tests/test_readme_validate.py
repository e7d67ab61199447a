"""The README's ``archcost validate`` examples run as written, with no profile and no
calibration: the bundled cpu profile for one process, the bundled cpu-host cluster for two,
and one line saying the figures are rough and which calibration gives fairer ones."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from archcost.cli import app
from archcost.errors import ConfigError
from tests.conftest import ROOT


def _readme_validate_commands() -> list[list[str]]:
    """The commands of the first bash block of the README's validate section, continuation
    lines joined and trailing comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Checking predictions: `archcost validate`"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


COMMANDS = _readme_validate_commands()


def test_the_readme_shows_four_validate_commands_without_a_profile():
    assert len(COMMANDS) == 4
    assert all(c[:2] == ["archcost", "validate"] and "--hardware" not in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[c.index("--plan") + 1])
def test_a_readme_validate_command_runs_as_written(runner, monkeypatch, command):
    monkeypatch.chdir(ROOT)  # the commands name models/ relative to the checkout
    r = runner.invoke(app, command[1:])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    nproc = int(command[command.index("--nproc") + 1]) if "--nproc" in command else 1
    assert "predictions use rough datasheet-like figures" in out
    assert f"archcost calibrate --device cpu{f' --nproc {nproc}' if nproc > 1 else ''}" in out
    assert ("the links of cpu-host" in out) == (nproc > 1)
    assert "step time" in out and "measured" in out


def test_a_cpu_profile_for_several_processes_gets_the_host_links(runner):
    from archcost.hardware.profile import load_gpu
    from archcost.validate.compare import validation_cluster

    default = validation_cluster(None, "cpu", 2)
    derived = validation_cluster("cpu", "cpu", 2)
    assert default.name == derived.name == "cpu-host" and derived.gpu == load_gpu("cpu")
    assert default.gpus == 2 and [lv.name for lv in default.levels] == ["loopback"]
    with pytest.raises(ConfigError, match="need a cluster profile"):
        validation_cluster("h100-sxm", "cpu", 2)  # a GPU's datasheet says nothing of a host's links
    r = runner.invoke(app, ["profiles", "show", "cpu-host", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["name"] == "cpu-host"
