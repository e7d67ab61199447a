"""File output that never leaves a half-written file behind.

A file is written to a temporary name beside its destination and renamed over it. The
temporary file is created with mode 0666 and the process umask applied, as ``open(path, "w")``
would (``tempfile.mkstemp`` would make it 0600 and the report unreadable to the group); a file
that already exists keeps its permission bits. ``check_writable`` refuses a destination before
any work is done: a folder, a folder that does not exist, or one where no file can be created.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from archcost.errors import ConfigError

__all__ = ["atomic_write_text", "check_writable", "same_file", "same_target", "write_files",
           "write_json"]


def check_writable(path: Path | str, option: str = "-o") -> Path:
    """``path`` if a file can be written there, else a ConfigError naming ``option`` and the fix."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give the name of a file to write")
    directory = path.parent if str(path.parent) else Path(".")
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{option} {path}: {directory} is a file, not a folder; give a path "
                          "in a folder")
    if not directory.is_dir():
        raise ConfigError(f"{option} {path}: folder {directory} does not exist; create it first")
    probe = path.with_name(f".{path.name}.{secrets.token_hex(4)}.probe")
    try:  # the one sure test (root, read-only mounts, ACLs): create a file there
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot create a file in folder {directory} "
                          f"({exc.strerror or exc}); choose another folder") from None
    _remove(probe)
    return path


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether ``a`` and ``b`` are one existing file (through a relative path, ``~``, a
    symbolic or a hard link); a path that does not exist is no file's."""
    try:
        return os.path.samefile(Path(a).expanduser(), Path(b).expanduser())
    except (OSError, ValueError):
        return False


def same_target(a: Path | str, b: Path | str) -> bool:
    """Whether writing ``a`` and ``b`` writes one file: the same existing file
    (:func:`same_file`), or the same path once resolved (a file not written yet)."""
    return same_file(a, b) or Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it over ``path``."""
    path = check_writable(path, "cannot write")
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = None  # a new file: 0666 less the umask, applied by open()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}; choose another "
                          "path") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def write_json(path: Path | str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_files(files: dict[Path, str]) -> None:
    """Write every file atomically, all or none: when one fails (or Ctrl-C arrives), the files
    this call created are removed again.

    NB: a file that existed before keeps its new, complete content; it is not restored.
    """
    for path in files:
        check_writable(path, "cannot write")
    created: list[Path] = []
    try:
        for path, text in files.items():
            existed = path.exists()
            atomic_write_text(path, text)
            if not existed:
                created.append(path)
    except BaseException:
        for path in created:
            _remove(path)
        raise
