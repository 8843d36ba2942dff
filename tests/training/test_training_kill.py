"""A whole transfer process killed (SIGKILL) at several points resumes to the uninterrupted result."""

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from seqtransfer.data.dataset import parse_dataset
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.data.tasks import split_tasks
from seqtransfer.graph import GraphConfig, build_graph
from seqtransfer.training.checkpoint import load_checkpoint

TARGET = "Les-T1-lesion"
PATH = ["A-T1-tumour", "B-T1-tumour", TARGET]

# The child: one transfer with a tiny network, checkpoints every 2 steps, printing each step;
# with KILL_AT="node step" it SIGKILLs itself right after that step (deterministic: a parent
# reading the output could see the step only after the child has run past the next checkpoint).
CHILD = r"""
import json, os, signal, sys
from seqtransfer.core.threads import single_threaded
from seqtransfer.training.config import TrainConfig
from seqtransfer.training.config import NetworkConfig
from seqtransfer.pipeline.transfer import run_transfer
from seqtransfer.pipeline.config import FinetuneConfig
from seqtransfer.pipeline.workspace import open_workspace
from seqtransfer.pipeline.config import ZooConfig

graph, cache, path = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
net = NetworkConfig(patch_size=(16, 16, 16), filters=(4, 8, 16))
zoo = ZooConfig(network=net, train=TrainConfig(steps=6, augment=True, checkpoint_every=2), max_train=4)
ft = FinetuneConfig(steps=6, augment=True, checkpoint_every=2)

KILL_AT = os.environ.get("KILL_AT")

def progress(event):
    node, step = event.stage, event.done
    print(f"STEP {node} {step}", flush=True)
    if KILL_AT == f"{node} {step}":
        os.kill(os.getpid(), signal.SIGKILL)

with single_threaded():
    metrics = run_transfer(open_workspace(graph, size=16, cache_dir=cache), path[-1], path, zoo, ft, progress=progress)
print("RESULT " + json.dumps({"final_dice": metrics.final_dice, "final_model": metrics.final_model,
      "steps": [s.dice_after for s in metrics.steps]}), flush=True)
"""


def _child(warm_python, graph: Path, cache: Path, kill_at: str | None = None):
    """The child, forked from the warm zygote (whose PYTHONHASHSEED is 0, as every child's)."""
    env = dict(os.environ)
    env.pop("KILL_AT", None)
    if kill_at is not None:
        env["KILL_AT"] = kill_at
    return warm_python.run("-c", CHILD, str(graph), str(cache), json.dumps(PATH), env=env, timeout=300)


def _run_to_end(warm_python, graph: Path, cache: Path) -> dict:
    proc = _child(warm_python, graph, cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


def _kill_at(warm_python, graph: Path, cache: Path, node: str, step: int) -> list[str]:
    """Start the child, which SIGKILLs itself right after it reports ``step`` of ``node``."""
    proc = _child(warm_python, graph, cache, kill_at=f"{node} {step}")
    seen = [line.strip() for line in proc.stdout.splitlines()]
    assert proc.returncode == -signal.SIGKILL, f"child ended before the kill point; saw {seen[-3:]}"
    return seen


@pytest.mark.kill
@pytest.mark.slow
def test_kill_nine_at_three_points_then_resume_equals_uninterrupted(
    warm_python, dataset_factory, tmp_path: Path
) -> None:
    sites = {f"case_{i:03d}": ("A" if i < 6 else "B") for i in range(12)}
    tum = dataset_factory(
        "Dataset001_Tum", n_cases=12, channels=("T1",), labels=("tumour",), shape=(16, 16, 16), sites=sites, seed=1
    )
    les = dataset_factory(
        "Dataset002_Les", n_cases=20, channels=("T1",), labels=("lesion",), shape=(16, 16, 16), seed=2
    )
    tasks = split_tasks([parse_dataset(tum)[0], parse_dataset(les)[0]])
    config = GraphConfig(size=16, volumes_per_task=3, max_pairs=4, n_components=3, max_slices=100)
    cache = tmp_path / "c"
    build_graph(tasks, tmp_path / "ref", config, targets=[TARGET], cache=PreprocessCache(cache, PreprocessConfig(16)))
    shutil.copytree(tmp_path / "ref", tmp_path / "killed")

    reference = _run_to_end(warm_python, tmp_path / "ref", cache)

    killed = tmp_path / "killed"
    # inside the landmark's zoo training (after its first checkpoint), inside the path step,
    # and inside the target step: each time the next run resumes where the last one stopped
    _kill_at(warm_python, killed, cache, PATH[0], 3)
    seen = _kill_at(warm_python, killed, cache, PATH[1], 5)
    assert f"STEP {PATH[0]} 1" not in seen and f"STEP {PATH[0]} 3" in seen  # resumed at the step-2 checkpoint
    seen = _kill_at(warm_python, killed, cache, TARGET, 3)
    assert not any(s.startswith(f"STEP {PATH[1]} ") and int(s.split()[-1]) < 5 for s in seen)
    resumed = _run_to_end(warm_python, killed, cache)

    assert resumed["final_dice"] == reference["final_dice"]
    assert resumed["steps"] == reference["steps"]
    ref_weights = load_checkpoint(Path(reference["final_model"]) / "checkpoint_final.pth")["model"]
    new_weights = load_checkpoint(Path(resumed["final_model"]) / "checkpoint_final.pth")["model"]
    assert ref_weights.keys() == new_weights.keys()
    assert all(torch.equal(ref_weights[k], new_weights[k]) for k in ref_weights)
