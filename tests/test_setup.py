"""The README's set-up as a new user meets it: its two commands, read from README.md itself
(so the manual and this test cannot drift), run in a clean clone of this repository (the
committed tree at HEAD), in a new virtual environment, on a PATH where no Chromium is found.

The second command, ``./test.sh``, is given a small selection of tests (``SELECTION``): a
test that renders reports in headless Chromium, which passes only if test.sh made Chromium
available off PATH, and an ordinary fast test. This test is not in it, so it cannot run itself
again. About two minutes, most of it pip installing into the new environment from its cache.
Deselect it with ``-m "not fresh_clone"``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_report import CHROMIUM

pytestmark = pytest.mark.fresh_clone

# what the nested ./test.sh runs: one Chromium rendering and layout check, one plain test
SELECTION = ["tests/test_report_sweep.py::test_chromium_layout_of_a_categorical_sweep",
             "tests/test_loader.py::test_unknown_key_names_the_nearest"]
_NESTED = "ARCHCOST_SETUP_UNDER_TEST"
_TIMEOUT = 900


def readme_setup_commands(readme: Path = ROOT / "README.md") -> list[str]:
    """The bash code blocks of README's "Set-up" section, one command each."""
    text = readme.read_text(encoding="utf-8")
    m = re.search(r"^## Set-up \(two commands\)\n(.*?)^## ", text, re.S | re.M)
    assert m, "README.md has no '## Set-up (two commands)' section"
    blocks = re.findall(r"^```bash\n(.*?)^```", m.group(1), re.S | re.M)
    commands = [b.strip() for b in blocks]
    assert all(c and "\n" not in c for c in commands), commands
    return commands


def _without_chromium(path: str, tmp: Path, skip: set[Path]) -> str:
    """``path`` less the folders in ``skip``, each folder holding a Chromium replaced by a
    folder of links to everything else in it (so git, apt-get, dpkg, bash stay reachable)."""
    out = []
    for i, d in enumerate(p for p in path.split(os.pathsep) if p):
        folder = Path(d)
        if not folder.is_dir() or folder.resolve() in skip:
            continue
        if not any((folder / name).exists() for name in CHROMIUM):
            out.append(d)
            continue
        shim = tmp / f"path{i}"
        shim.mkdir()
        for entry in folder.iterdir():
            if not entry.name.startswith(("chromium", "google-chrome")):
                (shim / entry.name).symlink_to(entry)
        out.append(str(shim))
    return os.pathsep.join(out)


def _run(cmd: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=_TIMEOUT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`{cmd}` exited {proc.returncode}:\n{out[-6000:]}"
    return out


def test_readme_setup_in_a_clean_clone_new_venv_without_chromium(tmp_path):
    if os.environ.get(_NESTED):
        pytest.fail("test_setup ran inside its own nested ./test.sh: keep it out of SELECTION")
    install, test = readme_setup_commands()
    assert test.split()[0] == "./test.sh", test  # the selection below goes to pytest through it

    # a clean clone of the committed tree
    clone = tmp_path / "archcost"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)],
                   check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", head], check=True)

    # a new virtual environment, first on a PATH with no Chromium and without this one's
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    here = Path(sys.prefix).resolve() / "bin"
    env = {k: v for k, v in os.environ.items()
           if k not in ("ARCHCOST_CHROMIUM", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV",
                        "PYTEST_ADDOPTS") and not k.startswith("PYTEST_XDIST")}
    path = f"{venv / 'bin'}{os.pathsep}" + _without_chromium(os.environ["PATH"],
                                                              tmp_path, {here})
    # pip leaves compiling torch's thousands of modules to their first import: a minute of
    # CPU saved on a shared 2-core runner, nothing else changed in what is installed
    env.update(PATH=path, VIRTUAL_ENV=str(venv), PIP_COMPILE="0", **{_NESTED: "1"})
    for name in CHROMIUM:
        assert shutil.which(name, path=path) is None, name
    assert shutil.which("python", path=path) == str(venv / "bin" / "python")

    # command 1: install, then the main job on a bundled model
    out = _run(install, clone, env)
    assert "Llama" in out or "llama" in out, out[-3000:]
    assert re.search(r"step_time|step time", out), out[-3000:]
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import archcost; print(archcost.__file__)"], capture_output=True,
                           text=True, env=env, cwd=venv, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(clone.resolve()), where
    assert shutil.which("archcost", path=path) == str(venv / "bin" / "archcost")

    # command 2: the test script, on the selection
    nested_tmp = tmp_path / "nested-pytest"
    # -n 0 after test.sh's -n 2: two tests need no worker processes importing torch again
    out = _run(" ".join([test, *SELECTION, "-n", "0", f"--basetemp={nested_tmp}"]), clone,
               env)
    m = re.search(r"^test\.sh: python (\S+), chromium (\S+)$", out, re.M)
    assert m, out[-3000:]
    if shutil.which("apt-get", path=path):  # as on CI: Chromium came through apt-get, off PATH
        assert "test.sh: installing Chromium (apt-get install chromium)" in out, out[-3000:]
    assert Path(m.group(1)).parent == venv / "bin", m.group(0)  # the new venv's python
    assert m.group(2) != "none" and Path(m.group(2)).is_absolute(), m.group(0)
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|errors?)\b.*?)\s*=*$", out, re.M)
    assert summary and re.fullmatch(rf"{len(SELECTION)} passed in [\d.]+s( \([\d:]+\))?",
                                    summary[-1]), out[-3000:]
