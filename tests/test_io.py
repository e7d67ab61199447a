"""Output files: written atomically, with the permissions ``open()`` gives under the umask, all
or none."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import archcost.io as aio
from archcost.cli import app
from archcost.errors import ConfigError
from tests.conftest import DATA


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, then put it back."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_new_files_get_the_mode_open_gives_under_the_umask(tmp_path, umask, mask):
    umask(mask)
    with open(tmp_path / "by_open.txt", "w") as fh:  # the oracle: what any tool would create
        fh.write("x")
    aio.atomic_write_text(tmp_path / "report.json", "{}\n")
    assert _mode(tmp_path / "report.json") == _mode(tmp_path / "by_open.txt") == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["by_open.txt", "report.json"]


def test_an_existing_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "private.json"
    path.write_text("old")
    path.chmod(0o600)
    aio.atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o600


def test_the_cli_writes_reports_readable_by_the_group(runner, tmp_path, umask):
    umask(0o022)
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["analyze", str(DATA / "models" / "tiny_ok.py"), "-s", "4",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert _mode(out) == 0o644


def test_write_files_is_all_or_none(tmp_path, monkeypatch):
    """When the second file fails (here: Ctrl-C while writing it), the first, created by the
    same call, is removed; a file that existed before stays."""
    kept = tmp_path / "kept.json"
    kept.write_text("before")
    real, calls = aio.atomic_write_text, []

    def flaky(path, text):
        calls.append(Path(path).name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(aio, "atomic_write_text", flaky)
    files = {tmp_path / "a.json": "a", kept: "after", tmp_path / "b.json": "b"}
    with pytest.raises(KeyboardInterrupt):
        aio.write_files(files)
    assert calls == ["a.json", "kept.json", "b.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]
    assert kept.read_text() == "after"  # NB: replaced, complete; not restored


def test_write_files_checks_every_path_before_writing_any(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        aio.write_files({tmp_path / "a.json": "a", tmp_path / "no" / "b.json": "b"})
    assert not list(tmp_path.iterdir())


def test_a_failed_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(aio.os, "replace", refuse)
    with pytest.raises(ConfigError, match="Permission denied"):
        aio.atomic_write_text(tmp_path / "r.json", "{}")
    assert not list(tmp_path.iterdir())


def test_same_file_follows_relative_paths_and_links(tmp_path, monkeypatch):
    """An output is refused when it is an input however it is spelled: a relative path, a
    symbolic link, a hard link; a path that does not exist is no input's."""
    src = tmp_path / "model.py"
    src.write_text("x = 1\n")
    (tmp_path / "sym.py").symlink_to(src)
    os.link(src, tmp_path / "hard.py")
    (tmp_path / "other.py").write_text("x = 1\n")  # same content, another file
    monkeypatch.chdir(tmp_path)
    for spelling in ("model.py", "./model.py", str(src), "sym.py", "hard.py"):
        assert aio.same_file(spelling, src), spelling
    assert not aio.same_file("other.py", src)
    assert not aio.same_file("missing.py", src) and not aio.same_file(src, "missing.py")
    from archcost.cli.common import check_outputs

    with pytest.raises(ConfigError, match="sym.py: is the model file, which this command"):
        check_outputs(o="sym.py", inputs={"the model file": "model.py"})
    check_outputs(o="new.json", inputs={"the model file": "model.py", "a profile": None})
