"""The supervisor's side of a fork server (:mod:`verifier.bench.forkserver`): run one instance in a child of a
warm server, under the same hard deadline as an instance in its own process.

Each supervising process (an executor's worker) keeps one server, started on its first instance; the
server's one-off import is not charged to any instance. At the deadline (timeout + grace) the supervisor
kills the child's process group itself; the server reaps the child and reports its exit status and peak
memory. A server that dies (or stops answering) takes its child with it and is replaced by a fresh one for
the next instance; the instance it was running is recorded as an error.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from verifier.bench.processes import PARENT_DEATH_SIGNAL, child_env, kill_group, signal_name

#: seconds a fresh server may take to import the verifier before it counts as broken
START_TIMEOUT = 300.0
#: seconds the server may take to report a child it was told to fork, or one killed at the deadline
REPLY_TIMEOUT = 30.0


class ForkServerError(Exception):
    """The server could not start, died or stopped answering; the message says how, in one line."""


@dataclass(frozen=True)
class Exit:
    """How an instance's process ended: exit code (negative: the signal), peak RSS in KiB, and whether the
    supervisor killed it at the deadline."""

    code: int
    peak_rss_kib: int
    killed: bool


def python_target(command: tuple[str, ...]) -> tuple[list[str], list[str]] | None:
    """``(target, leading arguments)`` a fork server can run for ``command``, or None if it cannot.

    ``PYTHON -m MODULE ARGS...`` is ``(["module", MODULE], ARGS)`` and ``PYTHON SCRIPT.py ARGS...`` is
    ``(["path", SCRIPT.py], ARGS)``, where PYTHON is this very interpreter; anything else (another program,
    another Python, interpreter options) needs a process of its own.
    """
    if len(command) < 2 or not _is_this_python(command[0]):
        return None
    if command[1] == "-m" and len(command) >= 3:
        return ["module", command[2]], list(command[3:])
    if command[1].endswith(".py"):
        return ["path", command[1]], list(command[2:])
    return None


def _is_this_python(program: str) -> bool:
    found = shutil.which(program) or program
    return os.path.realpath(found) == os.path.realpath(sys.executable)


class ForkServer:
    """One warm server process and the conversation with it (see :mod:`verifier.bench.forkserver`)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._errors: Any = None
        self._buffer = b""

    def start(self) -> None:
        """Start the server and wait until it has imported the verifier."""
        self.close()
        self._errors = tempfile.TemporaryFile()
        self._buffer = b""
        self._process = subprocess.Popen([sys.executable, "-m", "verifier.bench.forkserver"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors,
                                         env=child_env(), preexec_fn=PARENT_DEATH_SIGNAL)
        ready = self._read(time.monotonic() + START_TIMEOUT, "to start")
        if not ready.get("ready"):
            self._broken(f"the fork server said {ready!r} instead of ready")

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ensure_started(self) -> None:
        """Start the server unless it is running (a dead one is replaced)."""
        if not self.alive:
            self.start()

    def run(self, target: list[str], argv: list[str], stdout: str, stderr: str, env: dict[str, str],
            deadline: float) -> Exit:
        """Run one instance in a child; kill its process group at ``deadline`` (monotonic) if still running."""
        request = {"target": target, "argv": argv, "stdout": stdout, "stderr": stderr, "env": env,
                   "cwd": os.getcwd()}
        self._send((json.dumps(request) + "\n").encode())
        pid = int(self._read(time.monotonic() + REPLY_TIMEOUT, "to fork", expect="started")["started"])
        try:
            ended = self._read(deadline, "while it ran the instance", expect="ended", pid=pid)
            killed = False
            if not ended:  # the deadline passed
                kill_group(pid)
                killed = True
                ended = self._read(time.monotonic() + REPLY_TIMEOUT, "to reap a killed instance",
                                   expect="ended", pid=pid)
                if not ended:
                    self._broken("the fork server did not reap an instance killed at its deadline")
        except BaseException:
            kill_group(pid)
            self.close()  # its next reply would answer nobody: start afresh
            raise
        return Exit(int(ended["status"]), int(ended.get("maxrss_kib", 0)), killed)

    def _send(self, data: bytes) -> None:
        """Write a request; a server found dead meanwhile (it died idle) is replaced once."""
        for attempt in range(2):
            self.ensure_started()
            assert self._process is not None and self._process.stdin is not None
            try:
                self._process.stdin.write(data)
                self._process.stdin.flush()
                return
            except OSError as error:
                if attempt:
                    self._broken(f"the fork server is gone ({error})")
                self.close()

    def _read(self, deadline: float, doing: str, expect: str = "ready", pid: int | None = None) -> dict[str, Any]:
        """The next reply, ``{}`` when ``deadline`` passes first (fatal for ``ready`` and ``started``)."""
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                if expect == "ended":
                    return {}
                self._broken(f"the fork server did not answer {doing}")
            chunk = os.read(fd, 65536)
            if not chunk:
                self._broken(f"the fork server died {doing}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            reply = {"garbled": line[:200].decode(errors="replace")}
        if not isinstance(reply, dict) or expect not in reply or (pid is not None and reply.get(expect) != pid):
            self._broken(f"the fork server answered {reply!r} when {expect!r} was due")
        return reply

    def _broken(self, what: str) -> None:
        """Stop the server and raise :class:`ForkServerError` with ``what``, its end and its last error line."""
        process = self._process
        detail = ""
        if process is not None:
            try:  # a server that closed its output is exiting: its own end, not our kill
                code: int | None = process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                code = None
            process.kill()
            process.wait()
            if code is not None and code < 0:
                detail = f" (killed by {signal_name(-code)})"
            elif code:
                detail = f" (exit code {code})"
            last = self._last_error_line()
            if last:
                detail += f"; last output: {last}"
        self.close()
        raise ForkServerError(what + detail)

    def _last_error_line(self) -> str:
        if self._errors is None:
            return ""
        self._errors.seek(0, os.SEEK_END)
        self._errors.seek(max(0, self._errors.tell() - 8192))
        lines = [line for line in self._errors.read().decode(errors="replace").splitlines()
                 if line.strip() and not line[:1].isspace()]
        return lines[-1].strip() if lines else ""

    def close(self) -> None:
        """End the server (it exits at the end of its input; killed if it does not at once)."""
        process, self._process = self._process, None
        if process is not None:
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close() if stream else None
                except OSError:
                    pass
            try:
                process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._errors is not None:
            self._errors.close()
            self._errors = None


_local = threading.local()


def shared_server() -> ForkServer:
    """This thread's fork server (one per supervising thread: a process-pool worker has one thread, a Dask
    worker may run several instances at once in its threads), created on first use. A process forked from
    one that had a server gets its own: the pipes it inherited belong to its parent's conversation."""
    server, owner = getattr(_local, "server", None), getattr(_local, "owner", 0)
    if server is None or owner != os.getpid():
        server = ForkServer()
        _local.server, _local.owner = server, os.getpid()
        atexit.register(server.close)
    return server
