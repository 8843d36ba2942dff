"""A contributor who is not root gets skips with a reason, not failures, for the root-only tests."""

from __future__ import annotations

import os
from pathlib import Path


def test_root_only_tests_are_skipped_with_a_reason_for_a_contributor_who_is_not_root(
    warm_python, tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[1]
    # the files with root-marked tests only: the others would be collected for nothing
    cli = sorted((root / "tests" / "cli").glob("test_*.py"))
    files = [str(p.relative_to(root)) for p in cli if "pytest.mark.root" in p.read_text()]
    assert files, "tests/cli has no root-marked test left to check"
    env = {**os.environ, "SEQTRANSFER_TESTS_NOT_ROOT": "1"}
    argv = ["-p", "no:cacheprovider", "-rs", "-m", "root", f"--basetemp={tmp_path / 'bt'}", *files]
    # a pytest of its own, forked from the warm zygote (torch imported already)
    code = "import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))"
    proc = warm_python.run("-c", code, *argv, cwd=root, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "2 skipped" in proc.stdout and "needs root" in proc.stdout, proc.stdout[-2000:]
