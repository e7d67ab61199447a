"""Closed sets of named options shared by tracing and planning (torch-free).

A ``CodedEnum`` member's ``code`` (its position) is what a numpy plan row stores.
"""

from __future__ import annotations

import enum
import functools

__all__ = ["CodedEnum", "Recompute"]


class CodedEnum(str, enum.Enum):
    """A closed set of named options; ``code`` (the position) is what a plan row stores."""

    @property
    def code(self) -> int:
        return _members(type(self)).index(self)

    @classmethod
    def from_code(cls, code: int):
        return _members(cls)[int(code)]


@functools.cache
def _members(cls) -> tuple:
    return tuple(cls)


class Recompute(CodedEnum):
    """Activation recomputation policy."""

    NONE = "none"
    SELECTIVE = "selective"  # attention core only (Korthikanti et al. 2022 Sec. 5)
    FULL = "full"  # every block keeps only its input and re-runs its forward in backward
