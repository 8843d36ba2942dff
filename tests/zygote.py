"""A warm Python for the SIGKILL tests: imports torch, MONAI and seqtransfer once, then forks children.

Started by the ``warm_python`` fixture (tests/conftest.py) with ``OMP_NUM_THREADS=1``. It only
imports, never computes, so no OpenMP or intra-op thread pool exists when it forks: the
children are plain single-threaded copies, each as if started by ``python -c CODE ARGV...``
or ``python SCRIPT ARGV...`` but without the 3-4 s of imports.

Protocol, one JSON object per line: requests on stdin, replies on the stdout it was started with.

* at start it replies ``{"ready": true, "threads": N}`` (N: the threads of this process);
* ``{"op": "start", "args": [...], "env": {...}, "cwd": ..., "stdout": PATH, "stderr": PATH}``
  forks a child and replies ``{"pid": PID}``; the child's stdin is /dev/null, its stdout and
  stderr go to the two files;
* ``{"op": "poll", "pid": PID}`` replies ``{"returncode": RC}`` once the child has ended
  (``-SIGNUM`` if a signal killed it, as :mod:`subprocess` reports it), else ``{"returncode": null}``.

End of input ends the zygote (children it started run on).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import pkgutil
import runpy
import sys
import threading
import traceback
import types
from typing import Any, BinaryIO

PRELOAD = ("torch", "monai", "nibabel", "numpy", "scipy", "sqlite3", "tomli_w")


def _preload() -> None:
    """Import the heavy libraries and every seqtransfer module (the optional Ray one aside)."""
    for name in PRELOAD:
        importlib.import_module(name)
    import seqtransfer

    for info in pkgutil.walk_packages(seqtransfer.__path__, "seqtransfer."):
        if "ray" not in info.name.rsplit(".", 1)[-1]:
            importlib.import_module(info.name)


def _threads() -> int:
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1


def _serve(requests: BinaryIO, replies: BinaryIO) -> dict[str, Any] | None:
    """Answer requests until the input ends (returns None) or, in a forked child, return its request."""

    def reply(obj: dict[str, Any]) -> None:
        replies.write(json.dumps(obj).encode() + b"\n")
        replies.flush()

    reply({"ready": True, "threads": _threads()})
    ended: dict[int, int] = {}
    while line := requests.readline():
        request = json.loads(line)
        if request["op"] == "start":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                return request
            reply({"pid": pid})
        elif request["op"] == "poll":
            pid = request["pid"]
            if pid not in ended:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    reply({"error": f"{pid} is not a child of the zygote"})
                    continue
                if done:
                    ended[pid] = os.waitstatus_to_exitcode(status)
            reply({"returncode": ended.get(pid)})
        else:
            reply({"error": f"unknown op {request['op']!r}"})
    return None


def _become(request: dict[str, Any], replies: BinaryIO) -> tuple[str, str | None, list[str]]:
    """In the forked child: its own files, cwd, environment and argv, as a fresh ``python`` would have."""
    replies.close()
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for fd, target in ((null, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    args: list[str] = request["args"]
    if args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        sys.path[0] = ""
        return "code", args[1], sys.argv
    sys.argv = list(args)
    sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
    return "script", None, sys.argv


def _exit_code(exc: SystemExit) -> int:
    """The status the interpreter would exit with for ``exc`` (printing a non-integer code)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    sys.stderr.write(f"{exc.code}\n")
    return 1


def _run(kind: str, code: str | None, argv: list[str]) -> None:
    """Run the child's code as ``__main__``, then exit as the interpreter would.

    Like :mod:`multiprocessing`'s forked workers, it ends with ``os._exit`` once the threads are
    joined, the ``atexit`` functions run and stdout and stderr are flushed: the interpreter's
    teardown of the modules the zygote imported (about a second here) is skipped.
    """
    status = 0
    try:
        if kind == "code":
            main = types.ModuleType("__main__")
            sys.modules["__main__"] = main
            exec(compile(code or "", "<string>", "exec"), main.__dict__)
        else:
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        status = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


if __name__ == "__main__":
    _replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray output of the imports goes to the zygote's stderr, not into the replies
    _preload()
    gc.freeze()  # the imported modules' objects: never scanned again, in the zygote or its children
    _request = _serve(sys.stdin.buffer, _replies)
    if _request is None:
        sys.exit(0)
    _kind, _code, _argv = _become(_request, _replies)
    _run(_kind, _code, _argv)
