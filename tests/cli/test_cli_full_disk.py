"""Commands on a full disk: one line, exit 2, earlier results untouched, and a run resumes
once there is space again.

The disk is real: a small tmpfs mounted in a private mount namespace (``unshare -m``, the
test runs as root like CI), filled with a filler file. The commands run in one driver
process inside that namespace, through the console script's ``main``.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

DRIVER = r"""
import hashlib, subprocess
from pathlib import Path

disk, cache, tum, les, out = (Path(a) for a in sys.argv[1:6])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "none", str(disk)], check=True)
os.environ["SEQTRANSFER_CACHE"] = str(cache)

def digests(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def fill():
    with open(disk / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 16))
                handle.flush()
        except OSError:
            pass


result = {}
result["build_ok"] = cli(
    "graph", "build", tum, les, "--out", disk / "g", "--target", "C-T1-tumour", "--size", 16, "--volumes", 3,
    "--max-pairs", 4,
)
before = digests(disk / "g")
fill()
result["build_full"] = cli(
    "graph", "build", tum, les, "--out", disk / "g2", "--size", 16, "--volumes", 3, "--max-pairs", 4
)
result["g2_exists"] = (disk / "g2").exists()
result["add_full"] = cli("graph", "build", tum, les, "--out", disk / "g", "--add", "--target", "C-T1-tumour")
result["select_full"] = cli("select", "--graph", disk / "g", "--target", "C-T1-tumour", "--uniform-performance")
result["graph_untouched"] = digests(disk / "g") == before
result["run_full"] = cli("run", out / "exp.toml", "--out", disk / "run", "--workers", 1)
(disk / "filler").unlink()
result["run_again"] = cli("run", out / "exp.toml", "--out", disk / "run", "--workers", 1)
from seqtransfer.experiment.store import RunStore
records = RunStore(disk / "run" / "runs.sqlite").records()
result["statuses"] = sorted({r.status for r in records})
result["methods_done"] = len([r for r in records if r.kind == "method" and r.status == "done"])
(out / "result.json").write_text(json.dumps(result))
"""


@pytest.mark.root
def test_commands_on_a_full_disk(dataset_factory, cli_driver_prelude: str, tmp_path: Path) -> None:
    sites = {f"case_{i:03d}": "ABC"[i % 3] for i in range(57)}
    tum = dataset_factory(
        "Dataset001_Tum", n_cases=57, channels=("T1",), labels=("tumour",), shape=(16, 16, 16), sites=sites, seed=1
    )
    les = dataset_factory(
        "Dataset002_Les", n_cases=19, channels=("T1",), labels=("lesion",), shape=(16, 16, 16), seed=2
    )
    config = {
        "data": {"datasets": [str(tum), str(les)]},
        "protocol": {"targets": ["C-T1-tumour"], "draws": 1, "methods": ["ours"], "quality_draws": 0},
        "graph": {"size": 16, "volumes_per_task": 3, "max_pairs": 4, "n_components": 3, "max_slices": 100},
        "network": {"patch_size": [16, 16, 16], "filters": [4, 8, 16]},
        "zoo": {"steps": 2, "max_train": 4},
        "finetune": {"steps": 2, "augment": False},
    }
    (tmp_path / "exp.toml").write_text(tomli_w.dumps(config))
    (tmp_path / "driver.py").write_text(cli_driver_prelude + DRIVER)
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            sys.executable,
            str(tmp_path / "driver.py"),
            str(disk),
            str(tmp_path / "cache"),
            str(tum),
            str(les),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["build_ok"]["code"] == 0, result["build_ok"]
    for name in ("build_full", "add_full", "select_full", "run_full"):
        outcome = result[name]
        lines = outcome["err"].strip().splitlines()
        assert outcome["code"] == 2 and len(lines) == 1 and lines[0].startswith("error:"), (name, outcome)
        assert "No space left on device" in lines[0] or "disk is full" in lines[0], (name, outcome)
    assert not result["g2_exists"]  # a failed new build leaves no folder
    assert result["graph_untouched"]  # the graph, its features and params byte for byte
    assert result["run_again"]["code"] == 0, result["run_again"]
    assert result["statuses"] == ["done"] and result["methods_done"] == 1
