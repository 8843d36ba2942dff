"""Unreadable inputs and unwritable outputs: one line, exit 2, nothing written.

The test runs as root (like CI), for whom file modes do not apply; the commands therefore
run in a driver process started through ``setpriv`` without the capabilities that bypass
file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a mode-000 file is unreadable
to it as it would be to a user.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seqtransfer.data.dataset import parse_dataset
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.data.tasks import split_tasks
from seqtransfer.graph import GraphConfig, build_graph

DRIVER = r"""
from pathlib import Path

root = Path(sys.argv[1])
os.environ["SEQTRANSFER_CACHE"] = str(root / "cache")

tum, les, graph = root / "Dataset001_Tum", root / "Dataset002_Les", root / "graph"
out = {
    "verify_image": cli("verify", root / "Dataset003_Bad"),
    "tasks_json": cli("tasks", root / "Dataset004_NoJson"),
    "run_config": cli("run", root / "exp.toml", "--out", root / "run"),
    "build_readonly": cli("graph", "build", tum, les, "--out", root / "readonly" / "g", "--size", 16, "--volumes", 3),
    "build_groups": cli(
        "graph", "build", tum, les, "--out", root / "g3", "--size", 16, "--groups", root / "groups.json"
    ),
    "select_graph": cli("select", "--graph", graph, "--target", "Les-T1-lesion", "--uniform-performance"),
    "show_graph": cli("graph", "show", graph),
}
print(json.dumps(out))
"""


@pytest.mark.root
def test_unreadable_inputs_and_unwritable_outputs(dataset_factory, cli_driver_prelude: str, tmp_path: Path) -> None:
    sites = {f"case_{i:03d}": "AB"[i % 2] for i in range(8)}
    tum = dataset_factory(
        "Dataset001_Tum", n_cases=8, channels=("T1",), labels=("tumour",), shape=(16, 16, 16), sites=sites, seed=1
    )
    les = dataset_factory(
        "Dataset002_Les", n_cases=19, channels=("T1",), labels=("lesion",), shape=(16, 16, 16), seed=2
    )
    bad = dataset_factory("Dataset003_Bad", n_cases=4, channels=("T1",), labels=("x",), shape=(16, 16, 16), seed=3)
    nojson = dataset_factory(
        "Dataset004_NoJson", n_cases=4, channels=("T1",), labels=("x",), shape=(16, 16, 16), seed=4
    )
    tasks = split_tasks([parse_dataset(tum)[0], parse_dataset(les)[0]])
    config = GraphConfig(size=16, volumes_per_task=3, max_pairs=4, n_components=3, max_slices=100)
    build_graph(
        tasks,
        tmp_path / "graph",
        config,
        targets=["Les-T1-lesion"],
        cache=PreprocessCache(tmp_path / "cache", PreprocessConfig(16)),
    )

    unreadable = [
        next((bad / "imagesTr").iterdir()),
        nojson / "dataset.json",
        tmp_path / "exp.toml",
        tmp_path / "groups.json",
        tmp_path / "graph" / "graph.json",
    ]
    (tmp_path / "exp.toml").write_text("seed = 0\n")
    (tmp_path / "groups.json").write_text("{}")
    (tmp_path / "readonly").mkdir()
    for path in unreadable:
        path.chmod(0)
    (tmp_path / "readonly").chmod(0o555)
    tmp_path.chmod(0o755)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    (tmp_path / "driver.py").write_text(cli_driver_prelude + DRIVER)
    try:
        proc = subprocess.run(
            [
                "setpriv",
                "--bounding-set",
                "-dac_override,-dac_read_search",
                "--inh-caps=-all",
                sys.executable,
                str(tmp_path / "driver.py"),
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=200,
        )
    finally:
        for path in unreadable:
            path.chmod(0o644)
        (tmp_path / "readonly").chmod(0o755)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {
        "verify_image": unreadable[0].name,
        "tasks_json": "dataset.json",
        "run_config": "exp.toml",
        "build_readonly": "Permission denied",
        "build_groups": "groups.json",
        "select_graph": "graph.json",
        "show_graph": "graph.json",
    }
    for name, fragment in expected.items():
        outcome = outcomes[name]
        lines = outcome["err"].strip().splitlines()
        problems = [line for line in lines if not line.split(" ", 1)[0][:1].isdigit()]  # verify adds a count line
        assert outcome["code"] == 2 and len(problems) == 1 and problems[0].startswith("error:"), (name, outcome)
        assert fragment in problems[0] and "Traceback" not in outcome["err"], (name, outcome)
    # the only thing allowed: verification records of the datasets that were valid (a cache of
    # checks in the user cache, keyed by file sizes and times), never a result
    after = sorted(
        str(p.relative_to(tmp_path))
        for p in tmp_path.rglob("*")
        if not str(p.relative_to(tmp_path)).startswith("cache/verified")
    )
    assert sorted(set(after) - set(before)) == ["driver.py"], sorted(set(after) - set(before))  # nothing else written
