"""The fork server: a warm Python that has imported the verifier once and forks one child per instance.

Run as ``python -m verifier.bench.forkserver`` by :class:`verifier.bench.forkclient.ForkServer`, which talks
to it in JSON lines over its standard input and output::

    server -> {"ready": true, "pid": P}                                    once, after the imports
    client -> {"target": ["module", "verifier"] | ["path", SCRIPT], "argv": [...], "stdout": FILE,
               "stderr": FILE, "env": {...}, "cwd": DIR}
    server -> {"started": PID}                                              the child is in its own session
    server -> {"ended": PID, "status": CODE, "maxrss_kib": KIB}            CODE < 0: killed by signal -CODE

The child is what ``python -m MODULE ARGV...`` (or ``python SCRIPT ARGV...``) would have been, minus the
interpreter's start-up: it starts a new session (so the client can kill its process group at the deadline),
dies with the server, points its standard streams at the instance's files, takes the request's environment
and folder, runs the target with :mod:`runpy` as ``__main__``, and exits with the code the interpreter would
have given (an uncaught exception: its traceback on stderr, exit code 1). The default target is
``python -m verifier verify ...``: the same code path as the command line.

Fork safety: the server only imports (torch, onnx, onnxruntime and the verification modules, including
those the first verification would import lazily); it computes nothing, so no PyTorch or onnxruntime thread
pool exists when it forks (only OpenBLAS's, which is rebuilt after a fork), and every session and pool is
created in a child. Environment variables read at import time (``OMP_NUM_THREADS``, ...) take the server's
values; ``VERIFIER_THREADS`` is read per child.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import runpy
import sys
import traceback
from typing import Any, NoReturn

from verifier.bench.processes import die_with_parent, kill_group

#: imported once by the server: the command line, the verification path and what it imports lazily
PRELOAD = ("verifier.cli", "verifier.commands.verify", "verifier.complete", "verifier.spec.witness",
           "verifier.bab.input_split", "verifier.bounds.alpha", "verifier.bounds.forward", "onnx", "onnxruntime",
           # torch.broadcast_shapes imports sympy (0.2 s) on its first call
           "torch.fx.experimental.symbolic_shapes")


def preload(modules: tuple[str, ...] = PRELOAD) -> None:
    """Import ``modules``; one that fails is reported on stderr and left to fail again in the child."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - the instance that needs it will report it
            print(f"fork server: could not preload {name}: {type(error).__name__}: {error}", file=sys.stderr)
    try:  # what the first verification would load late: native kernels, ONNX schemas (no threads, no compute)
        from verifier.commands.verify import warm_up

        warm_up()
    except Exception as error:  # noqa: BLE001
        print(f"fork server: could not warm up: {type(error).__name__}: {error}", file=sys.stderr)


def serve(requests: int, replies: int) -> None:
    """Answer requests read from file descriptor ``requests`` on ``replies`` until end of input."""
    with os.fdopen(requests, "rb") as reader:
        for line in reader:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError as error:
                _reply(replies, {"error": f"bad request: {error}"})
                continue
            pid, release = _fork(request, (requests, replies))
            _reply(replies, {"started": pid})
            os.close(release)  # only now may the child run: whatever it does comes after "started"
            status, maxrss_kib = _reap(pid)
            _reply(replies, {"ended": pid, "status": status, "maxrss_kib": maxrss_kib})


def _fork(request: dict[str, Any], server_fds: tuple[int, int]) -> tuple[int, int]:
    """Fork the child of ``request``; once it leads its own session return its pid and the descriptor whose
    closing releases it (the child waits for that, so nothing it does, not even killing the server, can come
    before the server has announced it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    ready_read, ready_write = os.pipe()
    release_read, release_write = os.pipe()
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(ready_read)
        os.close(release_write)
        _child(request, server, server_fds, ready_write, release_read)
    os.close(ready_write)
    os.close(release_read)
    os.read(ready_read, 1)  # empty if the child died first: its exit is reaped all the same
    os.close(ready_read)
    return pid, release_write


def _reap(pid: int) -> tuple[int, int]:
    """Wait for the child, kill what it left in its group, reap it: ``(exit code, peak RSS in KiB)``."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    kill_group(pid)  # the leader is a zombie until reaped, so its group id cannot be reused yet
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), int(usage.ru_maxrss)


def _child(request: dict[str, Any], server: int, server_fds: tuple[int, int], ready: int,
           release: int) -> NoReturn:
    """Become the instance: own session, the request's streams, environment and folder; run; exit."""
    code = 1
    try:
        os.setsid()
        die_with_parent()
        if os.getppid() != server:  # the server died before the line above
            os._exit(1)
        os.write(ready, b".")
        os.close(ready)
        os.read(release, 1)  # end of file once the server has said "started" (or died: then so do we)
        os.close(release)
        for fd in server_fds:
            os.close(fd)
        _redirect(request)
        os.environ.clear()
        os.environ.update(request.get("env") or {})
        if request.get("cwd"):
            os.chdir(request["cwd"])
        sys.argv = [str(arg) for arg in request["argv"]]
        code = _run_target(request["target"])
    except BaseException:  # noqa: BLE001 - as the interpreter would: traceback, exit code 1
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()  # what the interpreter runs at exit, then its buffered output
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _redirect(request: dict[str, Any]) -> None:
    """Standard input from /dev/null, output and errors to the request's files."""
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)


def _run_target(target: list[str]) -> int:
    """Run ``["module", NAME]`` or ``["path", SCRIPT]`` as ``__main__``; the exit code it ends with."""
    kind, name = target
    try:  # sys.path[0] as the interpreter sets it: the current folder for -m, else the script's folder
        if kind == "module":
            sys.path[0] = os.getcwd()
            runpy.run_module(name, run_name="__main__", alter_sys=True)
        elif kind == "path":
            sys.path[0] = os.path.dirname(os.path.abspath(name))
            runpy.run_path(name, run_name="__main__")
        else:
            raise ValueError(f"unknown target kind {kind!r}")
    except SystemExit as done:
        return _exit_code(done.code)
    return 0


def _exit_code(code: object) -> int:
    """The exit status of ``sys.exit(code)``: None is 0, a number itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _reply(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def main() -> None:
    """Keep the protocol's pipes, send stray output to stderr, import, say ready, serve."""
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # a print() during an import must not corrupt the replies
    die_with_parent()
    preload()
    gc.freeze()  # the imported objects are shared with every child; keep its collector off their pages
    _reply(replies, {"ready": True, "pid": os.getpid()})
    serve(requests, replies)


if __name__ == "__main__":
    main()
