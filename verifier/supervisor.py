"""A hard deadline for a command-line run that no computation can delay.

A thread cannot enforce a deadline in Python: while the main thread is inside a long C call that holds the
interpreter lock (loading torch's shared libraries on a busy machine takes seconds), no other thread runs.
So the ``verify`` command forks before it imports anything heavy: the **child** does the work and answers; the
**parent** (the process the caller waits for) only waits. If the child has not started to answer by the
deadline, the parent stops it, writes the ``timeout`` answer itself (stdout and the result file) and exits 0,
within milliseconds of the deadline whatever the child is doing.

The two talk over a pipe, one line per message: ``A`` (the child is answering: the parent then just waits for
it) and ``S{json}`` (the child's latest statistics: the global lower bound and the open domains, which the
parent's ``timeout`` answer carries). At the deadline the parent freezes the child (SIGSTOP) before it reads
the pipe a last time, so exactly one of them answers. Ctrl-C and SIGTERM given to the parent are passed on
to the child, and the parent exits with the child's exit status (or, if the child was killed by a signal,
by the same signal). Standard library only.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import time
from collections.abc import Callable

#: how long the parent lets a child that has started answering finish before ending it
ANSWER_GRACE = 5.0


class Supervised:
    """The child's end of the pipe: :meth:`answering` before the answer, :meth:`report` for statistics."""

    def __init__(self, fd: int):
        self.fd = fd

    def answering(self) -> None:
        self._send(b"A\n")

    def report(self, stats: dict) -> None:
        keep = {k: stats.get(k) for k in ("lower_bound", "open_domains", "domains")}
        keep = {k: v for k, v in keep.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        self._send(b"S" + json.dumps(keep).encode() + b"\n")

    def _send(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError:  # the parent is gone: nobody is listening
            pass


def supervise(deadline: float, answer_timeout: Callable[[dict], None]) -> Supervised | None:
    """Fork. In the child, return the :class:`Supervised` pipe end; the parent waits until the child ends or
    ``deadline`` (monotonic) passes, then calls ``answer_timeout(last statistics)`` if the child had not started
    to answer, and exits; it never returns. Returns None where ``os.fork`` is missing (nothing supervises)."""
    if not hasattr(os, "fork"):
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        return Supervised(write_end)
    os.close(write_end)
    os._exit(_parent(pid, read_end, deadline, answer_timeout))


def _parent(child: int, pipe: int, deadline: float, answer_timeout: Callable[[dict], None]) -> int:
    def forward(signum, frame):
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    stats: dict = {}
    buffer = b""
    answering = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0 and not answering:
            break
        try:
            ready, _, _ = select.select([pipe], [], [], max(left, 0) if not answering else ANSWER_GRACE)
        except InterruptedError:
            continue
        if not ready:
            if answering:  # answering for ANSWER_GRACE seconds: stuck
                _kill(child)
            break
        data = os.read(pipe, 65536)
        if not data:  # the child ended (or closed the pipe): its status is the run's
            return _status(child)
        buffer, answering, stats = _read(buffer + data, answering, stats)
    if not answering:
        try:  # freeze the child, then read what it sent last: did it start to answer?
            os.kill(child, signal.SIGSTOP)
        except OSError:
            pass
        while select.select([pipe], [], [], 0)[0]:
            data = os.read(pipe, 65536)
            if not data:
                break
            buffer, answering, stats = _read(buffer + data, answering, stats)
        if answering:
            os.kill(child, signal.SIGCONT)
            return _status(child)
        _kill(child)
        answer_timeout(stats)
        return 0
    return _status(child)


def _read(data: bytes, answering: bool, stats: dict) -> tuple[bytes, bool, dict]:
    *lines, rest = data.split(b"\n")
    for line in lines:
        if line == b"A":
            answering = True
        elif line.startswith(b"S"):
            try:
                stats = json.loads(line[1:])
            except ValueError:
                pass
    return rest, answering, stats


def _kill(child: int) -> None:
    try:
        os.kill(child, signal.SIGKILL)
        os.kill(child, signal.SIGCONT)
    except OSError:
        pass
    try:
        os.waitpid(child, 0)
    except ChildProcessError:
        pass


def _status(child: int) -> int:
    """Wait for the child; its exit code, or (killed by a signal) the parent dies the same way."""
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGINT,):
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        return 128 + signum
    return os.WEXITSTATUS(status)
