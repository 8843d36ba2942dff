"""What travels when the Ray tasks see no shared filesystem (``seqtransfer.experiment.mirror``).

1. The size of a final checkpoint (weights, Adam's two moments, the rest of the trainer's
   state) of each network preset, as ``seqtransfer`` writes it.
2. Through a file server on a local Ray cluster (2 CPUs): a task syncs a run folder of one
   such checkpoint and ``--small`` small files into an empty scratch folder, then ships a new
   checkpoint back; a second task of the same node syncs again (fetching nothing). Each is
   timed against ``shutil.copyfile`` of the same bytes in this process (the baseline).

    .venv/bin/python benchmarks/shipping.py [--preset cpu|nnunet] [--small 200]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch


def checkpoint_bytes(preset: str) -> bytes:
    """A final checkpoint of ``preset``'s network as the trainer saves it (Adam, one step taken)."""
    from seqtransfer.training.config import NetworkConfig
    from seqtransfer.training.network import build_network

    model = build_network(NetworkConfig(preset=preset))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    buffer = io.BytesIO()
    torch.save({"format": 1, "step": 1, "model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    return buffer.getvalue()


def sync_and_ship(link, out: str) -> dict[str, float]:
    """In a Ray task: sync into an empty scratch, ship a new file, sync again as a second process."""
    from seqtransfer.experiment.mirror import RUN, Mirror

    t0 = time.perf_counter()
    mirror = Mirror(Path(out), link, node="bench")
    placed = mirror.sync(link.entries)
    placed += mirror.fetch(mirror.path(RUN) / "models")  # the models come when needed
    t1 = time.perf_counter()
    new = mirror.path(RUN) / "models" / "new" / "checkpoint_final.pth"
    new.parent.mkdir(parents=True)
    source = next(iter(mirror.path(RUN).rglob("checkpoint_final.pth")))
    data = bytearray(source.read_bytes())
    data[-1] ^= 1  # new content, same size
    new.write_bytes(bytes(data))
    t2 = time.perf_counter()
    shipped = mirror.ship()
    t3 = time.perf_counter()
    again = Mirror(Path(out), link, node="bench-2")
    t4 = time.perf_counter()
    again.sync(link.entries)
    again.fetch(again.path(RUN) / "models")
    t5 = time.perf_counter()
    return {"sync_s": t1 - t0, "placed": placed, "ship_s": t3 - t2, "shipped": shipped, "second_sync_s": t5 - t4}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--small", type=int, default=200)
    args = parser.parse_args()

    for preset in ("cpu", "nnunet"):
        size = len(checkpoint_bytes(preset))
        print(f"checkpoint_final.pth, {preset} preset: {size / 1e6:.1f} MB")

    import ray

    from seqtransfer.experiment.mirror import driver_roots, stage_link, start_server

    ckpt = checkpoint_bytes(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp, "run")
        (run / "models" / "zoo" / "A").mkdir(parents=True)
        (run / "models" / "zoo" / "A" / "checkpoint_final.pth").write_bytes(ckpt)
        for i in range(args.small):
            (run / "cache" / f"{i:04d}").mkdir(parents=True)
            (run / "cache" / f"{i:04d}" / "meta.json").write_text(f'{{"case": {i}}}')
        total = ckpt.__len__() + sum(len(f'{{"case": {i}}}') for i in range(args.small))
        t0 = time.perf_counter()
        shutil.copyfile(run / "models" / "zoo" / "A" / "checkpoint_final.pth", Path(tmp, "copy.pth"))
        for i in range(args.small):
            shutil.copyfile(run / "cache" / f"{i:04d}" / "meta.json", Path(tmp, f"meta{i}.json"))
        baseline = time.perf_counter() - t0
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            roots = driver_roots(run, [], {})
            t0 = time.perf_counter()
            link = stage_link(roots, start_server(roots), None)
            manifest_s = time.perf_counter() - t0
            task = ray.remote(num_cpus=1)(sync_and_ship)
            result = ray.get(task.remote(link, str(Path(tmp, "scratch"))))
        finally:
            ray.shutdown()
        digest = hashlib.sha256((run / "models" / "new" / "checkpoint_final.pth").read_bytes()).hexdigest()
        assert digest != hashlib.sha256(ckpt).hexdigest()
    mb = total / 1e6
    print(
        f"run folder: 1 checkpoint ({len(ckpt) / 1e6:.1f} MB, {args.preset}) + {args.small} small files ({mb:.1f} MB)"
    )
    print(f"baseline shutil.copyfile in this process: {baseline:.3f} s")
    print(f"driver manifest (hashing every file) + server start: {manifest_s:.3f} s")
    print(
        f"task sync into an empty scratch: {result['sync_s']:.3f} s ({int(result['placed'])} files, "
        f"{result['sync_s'] / baseline:.1f}x the copy)"
    )
    print(
        f"task ships one new checkpoint back: {result['ship_s']:.3f} s "
        f"({len(ckpt) / 1e6 / result['ship_s']:.0f} MB/s; {int(result['shipped'])} file)"
    )
    print(f"second process of the node syncs (nothing fetched): {result['second_sync_s']:.3f} s")
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
