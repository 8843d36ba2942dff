"""A selected path as nnU-Net v2 runs it (``seqtransfer export nnunet``).

Users who trust numbers trained by nnU-Net itself can run the landmark and path seqtransfer
selected with nnU-Net v2: one nnU-Net raw dataset per step of the path, and a script that

1. plans and preprocesses the target (its fingerprint and its ``nnUNetPlans``), checking
   every dataset with nnU-Net's ``--verify_dataset_integrity``;
2. gives every other step the target's plans: its fingerprint, its own planning (which also
   copies its ``dataset.json`` where nnU-Net's preprocessing reads it), then
   ``nnUNetv2_move_plans_between_datasets`` from the target, and preprocessing with those
   plans, so all steps have one network (nnU-Net's pre-training recipe, once per step);
3. trains the steps in path order, each from the previous step's ``checkpoint_final.pth``
   (``nnUNetv2_train ... -pretrained_weights``); a step whose final checkpoint exists is
   skipped, so a rerun after an interruption continues;
4. predicts the target's unlabelled images (its ``imagesTs``) into ``predictions/``.

What each step holds (the cases seqtransfer's own ``transfer`` trains the steps on):

* the landmark: the cases its zoo model trained on (the recorded zoo model's, else the zoo
  split of the default zoo configuration);
* an intermediate step: the few cases a path step stands for
  (:func:`~seqtransfer.pipeline.transfer.path_step_cases`, 3 by default);
* the target: every labelled case of the target task, and its unlabelled images.

Every dataset is binary and single-channel, as the graph's tasks are: the task's channel is
copied byte for byte as channel ``0000``, the label is rewritten as 0/1 with the image's
header. nnU-Net fine-tunes every weight and has no EWC: the script reproduces the path and
its data, not seqtransfer's frozen-encoder recipe. The export never imports nnU-Net.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtransfer.core.atomic import publish_dir_mode, write_json, write_text
from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.core.progress import Progress, report
from seqtransfer.data.dataset import Case
from seqtransfer.data.io import read_image, write_image, write_label_like
from seqtransfer.data.tasks import Task
from seqtransfer.data.unlabelled import UnlabelledCase, find_unlabelled
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig
from seqtransfer.pipeline.transfer import path_step_cases, validate_path
from seqtransfer.pipeline.workspace import Workspace, open_workspace
from seqtransfer.pipeline.zoo import recorded_zoo_model, trained_zoo_config, zoo_split
from seqtransfer.selection.run import stored_selection

#: the first dataset id tried: nnU-Net's own examples and the Medical Segmentation Decathlon
#: use ids below 500
FIRST_ID = 500
#: the folders nnU-Net reads its dataset ids from (environment variables)
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
SCRIPT = "run_nnunet.sh"
MANIFEST = "export.json"
#: written into a step's preprocessed folder once its planning and preprocessing finished
PLANNED_MARKER = "seqtransfer_planned"
FILE_ENDING = ".nii.gz"
_DATASET_ID = re.compile(r"^Dataset(\d{3,})_")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9.\-]+")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportStep:
    """One step of the exported path: an nnU-Net raw dataset.

    Attributes:
        index: position in the path (0: the landmark).
        role: ``landmark``, ``intermediate`` or ``target``.
        task: the graph's task.
        dataset_id: its nnU-Net id.
        name: its folder name ``DatasetXXX_...``.
        cases: the labelled cases it holds.
        unlabelled: the target's unlabelled cases (``imagesTs``); empty for the other steps.
    """

    index: int
    role: str
    task: str
    dataset_id: int
    name: str
    cases: tuple[str, ...]
    unlabelled: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the manifest's ``steps``)."""
        return {
            "index": self.index,
            "role": self.role,
            "task": self.task,
            "dataset_id": self.dataset_id,
            "dataset": self.name,
            "cases": list(self.cases),
            "unlabelled": list(self.unlabelled),
        }


@dataclass
class ExportPlan:
    """What :func:`export_nnunet` writes, decided before anything is written.

    Attributes:
        workspace: the opened graph folder.
        target: the target task.
        path: the path, landmark first.
        steps: one per path step.
        unlabelled: the target's images to predict.
        landmark_cases_from: where the landmark's cases come from (its recorded zoo model or
            the default zoo split).
    """

    workspace: Workspace = field(repr=False)
    target: str
    path: list[str]
    steps: list[ExportStep]
    unlabelled: list[UnlabelledCase] = field(default_factory=list)
    landmark_cases_from: str = ""


def used_dataset_ids(folders: Sequence[str | os.PathLike[str]]) -> set[int]:
    """The nnU-Net dataset ids of the ``DatasetXXX_*`` folders inside these folders (missing
    folders have none)."""
    used: set[int] = set()
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            continue
        for child in path.iterdir():
            match = _DATASET_ID.match(child.name)
            if match:
                used.add(int(match.group(1)))
    return used


def environment_nnunet_folders() -> list[Path]:
    """The user's nnU-Net folders (``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``)
    that are set in the environment."""
    return [Path(os.environ[name]) for name in NNUNET_FOLDERS if os.environ.get(name)]


def fresh_ids(count: int, first: int, used: set[int]) -> list[int]:
    """``count`` dataset ids from ``first`` up, skipping ``used`` (nnU-Net ids are 1-9999 in practice).

    Raises:
        ConfigError: ``first`` is below 1.
    """
    if first < 1:
        raise ConfigError(f"--first-id must be at least 1, got {first}")
    ids: list[int] = []
    candidate = first
    while len(ids) < count:
        if candidate not in used:
            ids.append(candidate)
        candidate += 1
    return ids


def dataset_name(dataset_id: int, index: int, role: str, task: str) -> str:
    """``DatasetXXX_stepN-ROLE-TASK`` with the task name made safe for a folder."""
    safe = _UNSAFE_NAME.sub("-", task).strip("-") or "task"
    return f"Dataset{dataset_id:03d}_step{index}-{role}-{safe}"


def _landmark_cases(workspace: Workspace, task: Task) -> tuple[tuple[str, ...], ZooConfig, str]:
    """The landmark's training cases, the zoo configuration the path's steps draw from, and
    where both come from."""
    model = recorded_zoo_model(workspace, task.name)
    if model is not None:
        try:
            zoo = trained_zoo_config(model)
        except StoreError:  # a damaged config: the steps draw from the default zoo split
            zoo = ZooConfig()
        return model.train_cases, zoo, f"its zoo model {model.key}"
    zoo = ZooConfig()
    train_ids, _ = zoo_split(task, zoo)
    return train_ids, zoo, "the default zoo split (no zoo model recorded in the graph)"


def plan_export(
    graph_dir: str | Path,
    target: str,
    path: Sequence[str] | None = None,
    unlabelled_inputs: Sequence[str | Path] | None = None,
    first_id: int = FIRST_ID,
    used_ids: set[int] | None = None,
    finetune: FinetuneConfig | None = None,
) -> ExportPlan:
    """Check everything and decide what to write; nothing is written.

    Args:
        graph_dir: the graph folder.
        target: the target task.
        path: task names from the landmark to the target (default: the stored selection).
        unlabelled_inputs: the target's images to predict (default: its dataset's ``imagesTs``).
        first_id: the smallest dataset id to use.
        used_ids: ids already taken (default: those in the user's nnU-Net folders).
        finetune: how many cases an intermediate step takes, with which seed.

    Raises:
        ConfigError: an unknown target, no stored selection and no path, a bad path.
        DatasetError: a dataset of the graph is gone or invalid, a bad unlabelled image name.
        StoreError: the graph folder is missing or corrupt.
    """
    finetune = finetune or FinetuneConfig()
    workspace = open_workspace(graph_dir, size=32)
    target_task = workspace.task(target)
    if path is None:
        selection = stored_selection(graph_dir, target)
        if selection is None:
            where = workspace.store.selection_path(target)
            raise ConfigError(f"{where}: no stored selection for {target!r}; run `seqtransfer select` or pass --path")
        nodes = list(selection.path)
    else:
        nodes = [str(n) for n in path]
    validate_path(workspace, nodes, target)
    if len(nodes) < 2:
        raise ConfigError(f"path {' -> '.join(nodes)}: needs a landmark and the target (2 steps or more)")
    for node in nodes[:-1]:
        if workspace.graph.nodes[node].get("labelled_volumes") == 0:
            logger.warning(
                "%s: none of its sampled label volumes has foreground (graph build); its dataset in the export "
                "may be all background",
                node,
            )
    landmark_cases, zoo, landmark_from = _landmark_cases(workspace, workspace.task(nodes[0]))
    if used_ids is None:
        used_ids = used_dataset_ids(environment_nnunet_folders())
    ids = fresh_ids(len(nodes), first_id, used_ids)
    if unlabelled_inputs is None:
        images_ts = target_task.dataset.root / "imagesTs"
        unlabelled_inputs = [images_ts] if images_ts.is_dir() and any(images_ts.iterdir()) else []
    dataset = target_task.dataset
    unlabelled = (
        find_unlabelled(unlabelled_inputs, len(dataset.channel_names), dataset.file_ending) if unlabelled_inputs else []
    )
    steps = []
    for index, (node, dataset_id) in enumerate(zip(nodes, ids, strict=True)):
        task = workspace.task(node)
        if index == 0:
            role, cases = "landmark", tuple(landmark_cases)
        elif node == target:
            role, cases = "target", tuple(c.case_id for c in task.cases)
        else:
            role, cases = "intermediate", tuple(path_step_cases(task, zoo, finetune))
        steps.append(
            ExportStep(
                index=index,
                role=role,
                task=node,
                dataset_id=dataset_id,
                name=dataset_name(dataset_id, index, role, node),
                cases=cases,
                unlabelled=tuple(u.case_id for u in unlabelled) if role == "target" else (),
            )
        )
    return ExportPlan(
        workspace=workspace,
        target=target,
        path=nodes,
        steps=steps,
        unlabelled=unlabelled,
        landmark_cases_from=landmark_from,
    )


def _copy_image(source: Path, dest: Path) -> None:
    """One channel as nnU-Net's ``CASE_0000.nii.gz``: the file itself when it is gzipped NIfTI,
    else rewritten with its affine."""
    if source.name.endswith(FILE_ENDING):
        shutil.copyfile(source, dest)
        return
    data, props = read_image(source)
    write_image(dest, data, props.affine)


def _write_case(workspace: Workspace, task: Task, case: Case, images: Path, labels: Path) -> None:
    _copy_image(case.images[task.channel], images / f"{case.case_id}_0000{FILE_ENDING}")
    binary, _ = workspace.original_label(task, case)
    write_label_like(labels / f"{case.case_id}{FILE_ENDING}", binary, case.images[task.channel])


def _dataset_json(task: Task, step: ExportStep, graph_dir: Path) -> dict[str, Any]:
    return {
        "channel_names": {"0": task.modality},
        "labels": {"background": 0, task.objective: 1},
        "numTraining": len(step.cases),
        "file_ending": FILE_ENDING,
        "name": step.name,
        "description": f"seqtransfer export: step {step.index} ({step.role}) of the path to {task.name}"
        if step.role == "target"
        else f"seqtransfer export: step {step.index} ({step.role}), task {task.name}",
        "seqtransfer": {
            "graph": str(graph_dir),
            "task": task.name,
            "role": step.role,
            "step": step.index,
            "source_dataset": str(task.dataset.root),
            "label_values": list(task.label_values),
            "channel": task.channel,
        },
    }


def render_script(plan: ExportPlan) -> str:
    """The bash script that runs the path with nnU-Net v2 (see the module docstring)."""
    target = plan.steps[-1]
    others = [s for s in plan.steps if s is not target]
    q = shlex.quote

    def say(message: str) -> str:
        return f"echo {q(message)}"

    lines = [
        "#!/usr/bin/env bash",
        f"# Written by `seqtransfer export nnunet`: the path {' -> '.join(plan.path)}",
        "# trained with nnU-Net v2, each step from the previous one, then the target's imagesTs predicted.",
        "#",
        "# Usage: ./run_nnunet.sh [plan|train|all]   (plan: stop after planning and preprocessing)",
        "# Settings from the environment (defaults in brackets):",
        "#   TRAINER [nnUNetTrainer]  e.g. nnUNetTrainer_250epochs",
        "#   FOLD    [all]            the fold of every step (a step of 3 cases has no 5-fold split)",
        "#   DEVICE  [cuda]           cuda, cpu or mps",
        "#   NP      [4]              processes of planning, preprocessing and prediction",
        "# nnU-Net's folders are the ones beside this script (nnUNet_raw/, nnUNet_preprocessed/, nnUNet_results/).",
        "set -euo pipefail",
        'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        'export nnUNet_raw="$HERE/nnUNet_raw"',
        'export nnUNet_preprocessed="$HERE/nnUNet_preprocessed"',
        'export nnUNet_results="$HERE/nnUNet_results"',
        'TRAINER="${TRAINER:-nnUNetTrainer}"',
        'FOLD="${FOLD:-all}"',
        'DEVICE="${DEVICE:-cuda}"',
        'NP="${NP:-4}"',
        "PLANS=nnUNetPlans",
        "CONFIG=3d_fullres",
        'STAGE="${1:-all}"',
        'case "$STAGE" in plan|train|all) ;; *) echo "usage: $0 [plan|train|all]" >&2; exit 2 ;; esac',
        "",
        'checkpoint() { echo "$nnUNet_results/$1/${TRAINER}__${PLANS}__${CONFIG}/fold_${FOLD}/checkpoint_final.pth"; }',
        "",
        "# a step's planning is done when its marker exists (a rerun skips it)",
        f'planned() {{ [ -f "$nnUNet_preprocessed/$1/{PLANNED_MARKER}" ]; }}',
        f'mark_planned() {{ touch "$nnUNet_preprocessed/$1/{PLANNED_MARKER}"; }}',
        "",
        f"if planned {q(target.name)}; then",
        "  " + say(f"== 1. the target ({target.task}, Dataset{target.dataset_id:03d}): planned already"),
        "else",
        "  " + say(f"== 1. plan and preprocess the target ({target.task}, Dataset{target.dataset_id:03d})"),
        f'  nnUNetv2_plan_and_preprocess -d {target.dataset_id} -c "$CONFIG" -np "$NP" --verify_dataset_integrity',
        f"  mark_planned {q(target.name)}",
        "fi",
        "",
    ]
    for step in others:
        lines += [
            f"if planned {q(step.name)}; then",
            "  " + say(f"== 2. step {step.index} ({step.role} {step.task}): planned already"),
            "else",
            "  "
            + say(f"== 2. target plans onto step {step.index} ({step.role} {step.task}, Dataset{step.dataset_id:03d})"),
            f'  nnUNetv2_extract_fingerprint -d {step.dataset_id} -np "$NP" --verify_dataset_integrity',
            f"  nnUNetv2_plan_experiment -d {step.dataset_id}",
            f"  nnUNetv2_move_plans_between_datasets -s {target.dataset_id} -t {step.dataset_id} "
            '-sp "$PLANS" -tp "$PLANS"',
            f'  nnUNetv2_preprocess -d {step.dataset_id} -plans_name "$PLANS" -c "$CONFIG" -np "$NP"',
            f"  mark_planned {q(step.name)}",
            "fi",
            "",
        ]
    lines += ['[ "$STAGE" = plan ] && exit 0', ""]
    previous: ExportStep | None = None
    for step in plan.steps:
        pretrained = f' -pretrained_weights "$(checkpoint {q(previous.name)})"' if previous is not None else ""
        lines += [
            f'if [ -f "$(checkpoint {q(step.name)})" ]; then',
            "  " + say(f"== 3. step {step.index} ({step.role} {step.task}): trained already"),
            "else",
            "  " + say(f"== 3. train step {step.index} ({step.role} {step.task}, Dataset{step.dataset_id:03d})"),
            f'  nnUNetv2_train {step.dataset_id} "$CONFIG" "$FOLD" -tr "$TRAINER" -p "$PLANS" -device "$DEVICE"'
            + pretrained,
            "fi",
            "",
        ]
        previous = step
    lines += ['[ "$STAGE" = train ] && exit 0', ""]
    if target.unlabelled:
        lines += [
            say(f"== 4. predict the target's {len(target.unlabelled)} unlabelled image(s) into predictions/"),
            f'nnUNetv2_predict -i "$nnUNet_raw/{target.name}/imagesTs" -o "$HERE/predictions" '
            f'-d {target.dataset_id} -c "$CONFIG" -f "$FOLD" -tr "$TRAINER" -p "$PLANS" -device "$DEVICE" '
            '-npp "$NP" -nps "$NP"',
        ]
    else:
        lines.append(say("== 4. the target has no unlabelled image (imagesTs): nothing to predict"))
    return "\n".join(lines) + "\n"


def export_nnunet(plan: ExportPlan, out_dir: str | Path, progress: Progress | None = None) -> Path:
    """Write the plan's datasets, script and manifest into ``out_dir``, atomically.

    Everything is written into a temporary folder beside ``out_dir`` that becomes
    ``out_dir`` only when complete: an interrupted or failed export leaves nothing.

    Args:
        plan: from :func:`plan_export`.
        out_dir: a folder that does not exist yet or is empty.
        progress: one event per written case.

    Returns:
        The script's path.

    Raises:
        ConfigError: ``out_dir`` exists and is not an empty folder, or cannot be written.
        DatasetError: an image or label cannot be read.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not an empty folder (the export writes a new one)")
    workspace = plan.workspace
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial.", dir=out.parent))
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write ({exc.strerror or exc})") from exc
    total = sum(len(s.cases) for s in plan.steps) + len(plan.unlabelled)
    done = 0
    try:
        raw = tmp / "nnUNet_raw"
        for step in plan.steps:
            task = workspace.task(step.task)
            root = raw / step.name
            (root / "imagesTr").mkdir(parents=True)
            (root / "labelsTr").mkdir()
            for case in workspace.cases(task, step.cases):
                _write_case(workspace, task, case, root / "imagesTr", root / "labelsTr")
                done += 1
                report(progress, "export", done, total)
            if step.role == "target" and plan.unlabelled:
                (root / "imagesTs").mkdir()
                for unlabelled in plan.unlabelled:
                    _copy_image(
                        unlabelled.images[task.channel], root / "imagesTs" / f"{unlabelled.case_id}_0000{FILE_ENDING}"
                    )
                    done += 1
                    report(progress, "export", done, total)
            write_json(root / "dataset.json", _dataset_json(task, step, workspace.root))
        script = tmp / SCRIPT
        write_text(script, render_script(plan))
        script.chmod(0o755)
        write_json(
            tmp / MANIFEST,
            {
                "graph": str(workspace.root),
                "target": plan.target,
                "path": plan.path,
                "landmark_cases_from": plan.landmark_cases_from,
                "steps": [s.to_dict() for s in plan.steps],
                "script": SCRIPT,
            },
        )
        publish_dir_mode(tmp)
        if out.exists():
            out.rmdir()  # empty (checked above): the finished export takes its place
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"{out}: cannot write the export ({exc.strerror or exc})") from exc
    except BaseException:  # a bad image, an interrupt: nothing half-written stays
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / SCRIPT


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest an export wrote (``export.json``)."""
    return json.loads((Path(out_dir) / MANIFEST).read_text())
