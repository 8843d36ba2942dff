"""Training-step time of ``seqtransfer``'s ``train()`` against a bare MONAI loop (one process).

Both loops train the same network (``build_network`` of the preset, same initialisation seed)
on the same random data (a few cases of the preset's patch size, each with a foreground cube)
with batch size 2, Dice + CE and Adam (lr 0.01):

* ours: ``train(model, cases, TrainConfig(steps, augment=False), patch_size, progress=...)``.
  Per-step times are the differences of the progress-callback timestamps (the callback runs
  after ``float(loss)``, which waits for the GPU); the first ``--warmup`` steps are dropped.
* bare: a MONAI-tutorial loop. The batch (2 patches) is already on the device; per step
  ``zero_grad``, forward under the same autocast, ``DiceCELoss(to_onehot_y=True,
  softmax=True)``, backward, ``Adam.step``, ``loss.item()`` (as MONAI's tutorials do; it is
  also where our loop synchronises).

The two alternate (ours, bare, bare, ours, ...) for ``--repeats`` rounds, each on a freshly
built network, to spread drifting machine load over both. Our loop with augmentation on is
timed once more as a separate line. Peak memory: CUDA ``torch.cuda.max_memory_allocated``
(reset before each measurement); CPU: the process' peak RSS (``VmHWM``), reset before each
measurement through ``/proc/self/clear_refs`` where the kernel allows it, else ``ru_maxrss``
(process-wide, monotonic).

``--amp`` uses bf16 autocast for both loops; the default is what ``train()`` does (bf16 on
CUDA, none on the CPU). Where ``--amp``/``--no-amp`` differs from that default, the benchmark
swaps ``seqtransfer.training.loop.autocast_context`` for the requested context (in this
process only; no library file changes).

Usage::

    python benchmarks/train_step.py --preset cpu --steps 30 --warmup 5 --json out.json
    python benchmarks/train_step.py --preset nnunet --amp   # GPU
    python benchmarks/train_step.py --preset nnunet --no-amp
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import monai
from monai.losses import DiceCELoss

import seqtransfer.training.loop as loop_mod
from seqtransfer.training.augment import PatchSampler
from seqtransfer.training.config import NetworkConfig, TrainConfig
from seqtransfer.training.loop import train
from seqtransfer.training.network import build_network, select_device

N_CASES = 4
BATCH = 2


def make_cases(patch: tuple[int, int, int], n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` random cases of the patch size, each with a foreground cube brighter than the rest."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        image = rng.normal(0.0, 1.0, size=(1, *patch)).astype(np.float32)
        label = np.zeros(patch, dtype=np.uint8)
        edge = [max(2, p // 4) for p in patch]
        lo = [int(rng.integers(0, p - e + 1)) for p, e in zip(patch, edge, strict=True)]
        sl = tuple(slice(a, a + e) for a, e in zip(lo, edge, strict=True))
        label[sl] = 1
        image[(0, *sl)] += 2.0
        cases.append((image, label))
    return cases


# ---------------------------------------------------------------- memory
def _clear_refs_ok() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _vm(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of one measurement (bytes): CUDA allocator peak, or peak RSS on the CPU."""

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev
        self.kind = ""
        self.base = 0

    def reset(self) -> None:
        gc.collect()
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            self.kind = "cuda max_memory_allocated"
        elif _clear_refs_ok():
            self.base = _vm("VmRSS") or 0
            self.kind = "VmHWM after clear_refs (process peak RSS during the measurement)"
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.kind = "ru_maxrss (process-wide peak since start)"

    def peak(self) -> dict[str, Any]:
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self.kind.startswith("VmHWM"):
            peak = _vm("VmHWM") or 0
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {
            "peak_bytes": int(peak),
            "before_bytes": int(self.base),
            "kind": self.kind,
        }


# ---------------------------------------------------------------- the two loops
def amp_context_factory(
    amp: bool,
) -> Callable[[torch.device], contextlib.AbstractContextManager[Any]]:
    def factory(device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if amp:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    return factory


def fresh_model(net_cfg: NetworkConfig) -> torch.nn.Module:
    return build_network(net_cfg, generator=torch.Generator().manual_seed(0))


def summarise(step_times: list[float]) -> dict[str, float]:
    return {
        "ms_per_step_mean": 1000.0 * sum(step_times) / len(step_times),
        "ms_per_step_median": 1000.0 * statistics.median(step_times),
        "ms_per_step_min": 1000.0 * min(step_times),
        "steps_timed": len(step_times),
    }


def run_ours(
    net_cfg: NetworkConfig,
    cases: list[tuple[np.ndarray, np.ndarray]],
    dev: torch.device,
    steps: int,
    warmup: int,
    augment: bool,
    mem: PeakMemory,
) -> dict[str, Any]:
    model = fresh_model(net_cfg)
    stamps: list[float] = []
    cpu_stamps: list[float] = []

    def progress(_event: Any) -> None:  # a seqtransfer.core.progress.ProgressEvent
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())

    mem.reset()
    t0 = time.perf_counter()
    result = train(
        model,
        cases,
        TrainConfig(steps=warmup + steps, augment=augment),
        net_cfg.patch_size,  # type: ignore[arg-type]
        device=dev,
        progress=progress,
    )
    total = time.perf_counter() - t0
    # stamps[i] is taken after step i + 1: the timed steps are the differences from stamps[warmup - 1]
    out = summarise(np.diff(np.asarray(stamps[warmup - 1 :])).tolist())
    out["cpu_ms_per_step"] = 1000.0 * (cpu_stamps[-1] - cpu_stamps[warmup - 1]) / steps
    out.update(mem.peak())
    out["wall_s_incl_setup_and_warmup"] = total
    out["final_loss"] = result.losses[-1]
    del model, result
    return out


def run_bare(
    net_cfg: NetworkConfig,
    cases: list[tuple[np.ndarray, np.ndarray]],
    dev: torch.device,
    steps: int,
    warmup: int,
    amp: bool,
    mem: PeakMemory,
) -> dict[str, Any]:
    model = fresh_model(net_cfg).to(dev)
    model.train()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    # the batch: case 0 and case 1 (whole volumes = one patch each), already on the device
    images = torch.from_numpy(np.stack([c[0] for c in cases[:BATCH]])).to(dev)
    labels = torch.from_numpy(np.stack([c[1][None] for c in cases[:BATCH]]).astype(np.float32)).to(dev)
    ctx = amp_context_factory(amp)
    mem.reset()
    stamps = [time.perf_counter()]
    cpu_stamps = [time.process_time()]
    loss_value = float("nan")
    for _ in range(warmup + steps):
        optimizer.zero_grad(set_to_none=True)
        with ctx(dev):
            output = model(images)
        loss = loss_fn(output.float(), labels)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())
    out = summarise(np.diff(np.asarray(stamps[warmup:])).tolist())
    # process CPU time (all threads): less sensitive than wall time to other jobs on a shared CPU
    out["cpu_ms_per_step"] = 1000.0 * (cpu_stamps[-1] - cpu_stamps[warmup]) / steps
    out.update(mem.peak())
    out["final_loss"] = loss_value
    del model, optimizer, images, labels
    return out


def time_components(
    net_cfg: NetworkConfig,
    cases: list[tuple[np.ndarray, np.ndarray]],
    dev: torch.device,
    n: int,
) -> dict[str, float]:
    """What our loop does per step beyond the bare loop, timed alone (ms per step)."""
    out: dict[str, float] = {}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sampler = PatchSampler(cases, net_cfg.patch_size)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    sampler.batch(BATCH, rng, dev)
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        sampler.batch(BATCH, rng, dev)
    sync()
    out["sampler_batch_no_augment_ms"] = 1000.0 * (time.perf_counter() - t0) / n
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    t0 = time.perf_counter()
    for i in range(n):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(i)
    out["fork_rng_and_seed_ms"] = 1000.0 * (time.perf_counter() - t0) / n
    return out


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=("cpu", "nnunet"), default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of ours/bare")
    ap.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast for both loops (default: what train() does: on for CUDA, off on the CPU)",
    )
    ap.add_argument(
        "--no-augment-line",
        action="store_true",
        help="skip the 'ours, augmentation on' line",
    )
    ap.add_argument("--device", default=None, help="cuda / cpu (default: select_device())")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        ap.error("--steps and --warmup must be >= 1")

    dev = torch.device(args.device) if args.device else select_device()
    default_amp = dev.type == "cuda"
    amp = default_amp if args.amp is None else bool(args.amp)
    patched = amp != default_amp
    if patched:
        loop_mod.autocast_context = amp_context_factory(amp)  # type: ignore[assignment]

    net_cfg = NetworkConfig(preset=args.preset)
    patch = tuple(net_cfg.patch_size)  # type: ignore[arg-type]
    cases = make_cases(patch, N_CASES)  # type: ignore[arg-type]
    n_params = sum(p.numel() for p in fresh_model(net_cfg).parameters())
    mem = PeakMemory(dev)

    meta = {
        "preset": args.preset,
        "patch_size": list(patch),
        "filters": list(net_cfg.filters or ()),
        "parameters": n_params,
        "batch_size": BATCH,
        "cases": N_CASES,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "amp_bf16": amp,
        "autocast_patched_in_loop": patched,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    print(json.dumps(meta), flush=True)

    ours: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    for r in range(args.repeats):
        order = ("ours", "bare") if r % 2 == 0 else ("bare", "ours")
        for which in order:
            if which == "ours":
                res = run_ours(net_cfg, cases, dev, args.steps, args.warmup, False, mem)
                ours.append(res)
            else:
                res = run_bare(net_cfg, cases, dev, args.steps, args.warmup, amp, mem)
                bare.append(res)
            print(
                f"round {r} {which:4s}: {res['ms_per_step_mean']:8.1f} ms/step mean, "
                f"{res['ms_per_step_median']:8.1f} median, {res['cpu_ms_per_step']:8.1f} CPU-ms/step, "
                f"peak {res['peak_bytes'] / 2**20:8.0f} MiB",
                flush=True,
            )

    aug = None
    if not args.no_augment_line:
        aug = run_ours(net_cfg, cases, dev, args.steps, args.warmup, True, mem)
        print(
            f"ours, augmentation on: {aug['ms_per_step_mean']:8.1f} ms/step mean, "
            f"{aug['ms_per_step_median']:8.1f} median, peak {aug['peak_bytes'] / 2**20:8.0f} MiB",
            flush=True,
        )

    components = time_components(net_cfg, cases, dev, max(10, args.steps))
    ratios = [o["ms_per_step_mean"] / b["ms_per_step_mean"] for o, b in zip(ours, bare, strict=True)]
    ours_mean = statistics.median(o["ms_per_step_mean"] for o in ours)
    bare_mean = statistics.median(b["ms_per_step_mean"] for b in bare)
    ours_med = statistics.median(o["ms_per_step_median"] for o in ours)
    bare_med = statistics.median(b["ms_per_step_median"] for b in bare)
    summary = {
        "ours_ms_per_step": ours_mean,
        "bare_ms_per_step": bare_mean,
        "ratio_ours_over_bare": ours_mean / bare_mean,
        "ratio_of_step_medians": ours_med / bare_med,
        "ratio_per_round": ratios,
        "ratio_of_process_cpu_time": statistics.median(o["cpu_ms_per_step"] for o in ours)
        / statistics.median(b["cpu_ms_per_step"] for b in bare),
        "goal": 1.1,
        "meets_goal": ours_mean / bare_mean <= 1.1,
        "ours_peak_mib": max(o["peak_bytes"] for o in ours) / 2**20,
        "bare_peak_mib": max(b["peak_bytes"] for b in bare) / 2**20,
        "ours_augment_ms_per_step": aug["ms_per_step_mean"] if aug else None,
        "ours_augment_peak_mib": aug["peak_bytes"] / 2**20 if aug else None,
        "components_ms": components,
        "loadavg_end": list(os.getloadavg()),
    }
    print("SUMMARY " + json.dumps(summary), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "meta": meta,
                    "ours": ours,
                    "bare": bare,
                    "ours_augment": aug,
                    "summary": summary,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
