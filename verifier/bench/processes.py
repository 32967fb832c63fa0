"""Process plumbing shared by the two ways an instance runs (its own process, or a child of a fork server):
killing a process group, dying with the parent, the environment of an instance, signal names.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path


def kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid``; nothing if the group is gone."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _parent_death_signal() -> Callable[[], None] | None:
    """A function that makes the calling process die with SIGKILL when its parent dies (Linux prctl), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))

    return set_parent_death_signal


#: a ``preexec_fn`` for :class:`subprocess.Popen`: the child dies with its parent (None off Linux)
PARENT_DEATH_SIGNAL = _parent_death_signal()


def die_with_parent() -> None:
    """Make this process die when its parent does (an executor's worker initializer, a forked instance)."""
    if PARENT_DEATH_SIGNAL is not None:
        PARENT_DEATH_SIGNAL()


def child_env(extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """This process's environment, with this package first on ``PYTHONPATH`` and ``extra`` on top."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # so `python -m verifier` finds this very package
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(dict(extra))
    return env


def signal_name(number: int) -> str:
    """``SIGSEGV`` for 11, ``signal 99`` for a number without a name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
