"""A contributor who is not root gets skips with a reason, not failures, for the root-only tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_root_only_tests_are_skipped_with_a_reason_for_a_contributor_who_is_not_root(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SEQTRANSFER_TESTS_NOT_ROOT": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-m",
            "root",
            f"--basetemp={tmp_path / 'bt'}",
            "tests/cli",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "2 skipped" in proc.stdout and "needs root" in proc.stdout, proc.stdout[-2000:]
