"""A watchdog that stops a capture making no progress, with one line naming where it stopped.

Progress is reaching a part of the step not reached before: a (phase, module) pair whose first
op is recorded, a stage of the capture (building the model, forward, backward, optimizer), or a
module imported (torch imports parts of itself, ``torch._dynamo`` among them, at first use:
seconds on a loaded machine).
A loop that never ends repeats ops of modules already seen and makes none; a deadlock records
nothing at all. After ``limit_s`` seconds without progress the watchdog:

1. asks the capture to stop: the next op the capturing thread dispatches raises
   :class:`Stalled` (``check()``, called by the recorder), which ends a loop that runs torch
   ops; the capture turns it into a ``TraceError`` naming the last op, its module and phase;
2. when that thread dispatches no op within a grace period (it is blocked inside native code,
   e.g. on a lock in autograd, or loops without running a torch op), prints the same kind of
   line on stderr and ends the process with exit code 2. Nothing has been written by then:
   outputs are written after the capture, atomically.

An exception is never injected asynchronously (``PyThreadState_SetAsyncExc``): raised inside
torch's C++ it can abort the process.

NB: progress is counted per (phase, module), so a model that legitimately spends longer than
the limit in one module without entering a new one (a Python loop over thousands of steps of
one cell) needs a larger limit (``--trace-timeout``).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["DEFAULT_LIMIT_S", "Stalled", "Watchdog"]

DEFAULT_LIMIT_S = 120.0  # a step's first op of a new module comes within ms; 120 s is no model


class Stalled(BaseException):
    """Raised in the capturing thread by the watchdog (BaseException: ``except Exception`` in
    model code must not swallow it)."""


class Watchdog:
    """Context manager watching ``progress()`` (a monotonic timestamp of the last progress).

    ``where()`` describes the last op, module and phase for the error line; ``message(where,
    blocked)`` builds the line; ``debug`` dumps every thread's stack before a hard exit.
    """

    def __init__(self, limit_s: float, progress: Callable[[], float], where: Callable[[], str],
                 message: Callable[[str, bool], str], debug: bool = False):
        self.limit_s = float(limit_s)
        self.progress = progress
        self.where = where
        self.message = message
        self.debug = debug
        self.fired: str | None = None  # the error line, once the watchdog fired
        self._done = threading.Event()
        self._target = threading.get_ident()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watchdog:
        if self.limit_s > 0:
            self._thread = threading.Thread(target=self._watch, name="archcost-watchdog",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()

    def check(self) -> None:
        """Raise :class:`Stalled` once the watchdog fired (call from the capturing thread)."""
        if self.fired is not None and threading.get_ident() == self._target:
            raise Stalled(self.fired)

    def _watch(self) -> None:
        poll = min(0.5, self.limit_s / 8)
        modules, imported_at = len(sys.modules), time.monotonic()
        while not self._done.wait(poll):
            if len(sys.modules) != modules:  # torch imports parts of itself on first use
                modules, imported_at = len(sys.modules), time.monotonic()
            idle = time.monotonic() - max(self.progress(), imported_at)
            if idle < self.limit_s:
                continue
            where = self.where()
            self.fired = self.message(where, False)
            if self._done.wait(min(self.limit_s, 5.0)):
                return
            # no op dispatched since: blocked in native code, or a loop without torch ops
            line = self.message(where, True)
            if self.debug:
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.write(f"error: {line}\n")
            sys.stderr.flush()
            os._exit(2)
