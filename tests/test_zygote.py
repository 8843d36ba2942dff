"""The warm zygote (tests/zygote.py) that the SIGKILL tests fork their children from reports like subprocess."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

CODE = """
import json, os, sys
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": os.environ.get("ZYGOTE_CHECK")}))
sys.stderr.write("to stderr\\n")
sys.exit(int(sys.argv[1]))
"""


def test_a_child_has_its_own_argv_cwd_env_and_exit_status(warm_python, tmp_path: Path) -> None:
    env = {**os.environ, "ZYGOTE_CHECK": "yes"}
    child = warm_python.run("-c", CODE, "3", "b", env=env, cwd=tmp_path, timeout=60)
    assert child.returncode == 3
    assert json.loads(child.stdout) == {"argv": ["-c", "3", "b"], "cwd": str(tmp_path), "env": "yes"}
    assert child.stderr == "to stderr\n"
    assert "ZYGOTE_CHECK" not in os.environ


def test_a_script_that_raises_exits_1_with_its_traceback(warm_python, tmp_path: Path) -> None:
    script = tmp_path / "boom.py"
    script.write_text("import sys\nassert sys.path[0] == sys.argv[1]\nraise ValueError('boom')\n")
    child = warm_python.run(script, tmp_path, timeout=60)
    assert child.returncode == 1
    assert "ValueError: boom" in child.stderr and "AssertionError" not in child.stderr


def test_a_sigkilled_child_reports_minus_sigkill(warm_python) -> None:
    child = warm_python.start("-c", "import time; print('up', flush=True); time.sleep(60)")
    deadline = time.monotonic() + 30
    while not child.stdout and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert child.stdout == "up\n" and child.poll() is None
    child.kill()
    assert child.wait(timeout=30) == -signal.SIGKILL
