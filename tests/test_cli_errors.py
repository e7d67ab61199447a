"""Bad input gives one clear line, exit code 2, no traceback, no half-written output."""

from __future__ import annotations

import pytest

from archcost.cli import app
from tests.conftest import DATA

M = DATA / "models"


@pytest.mark.parametrize(
    "args, message",
    [
        ([str(M / "missing.py")], "not found"),
        ([str(M / "syntax_error.py")], "syntax error"),
        ([str(M / "no_builder.py")], "defines no function build_model"),
        ([str(M / "builder_raises.py")], "raised ValueError"),
        ([str(M / "bad_inputs.py")], "make example_inputs match"),
        ([str(M / "tiny_ok.py"), "--set", "widht=3"], "has no parameter 'widht'"),
        ([str(M / "no_fake_kernel.py")], "has no fake-tensor kernel"),
        ([str(M / "data_dependent.py")], "has a data-dependent output"),
        ([str(M / "tiny_ok.py"), "--recompute", "some"], "--recompute 'some' is unknown"),
        ([str(M / "tiny_ok.py"), "--hardware", "h100x"], "profile named 'h100x'"),
        ([str(M / "tiny_ok.py"), "--solve", "min b"], "is not understood"),
        ([str(M / "returns_not_module.py")], "not a torch.nn.Module"),
        ([str(M / "tiny_ok.py"), "--dtype", "fp8"], "is not a precision"),
        ([str(M / "tiny_ok.py"), "--optimizer", "lion"], "is unknown"),
        ([str(M / "tiny_ok.py"), "--graph", "g.txt"], "unknown format"),
    ],
)
def test_bad_input_one_line_exit_2(runner, tmp_path, args, message):
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["analyze", *args, "-o", str(out)])
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert message in text
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    assert not out.exists()
    assert not list(tmp_path.iterdir())


def test_debug_shows_traceback(runner):
    result = runner.invoke(app, ["analyze", str(M / "builder_raises.py"), "--debug"])
    assert result.exit_code == 2
    assert "Traceback" in result.output
