"""Wall time of short CLI commands (start-up dominated): median of several runs.

Usage (from the repository root, with the package importable)::

    python benchmarks/cli_latency.py --graph GRAPH_DIR --target TASK [--repeats 7]

Times ``seqtransfer --help`` and ``seqtransfer select --graph GRAPH_DIR --target TASK
--uniform-performance`` in fresh processes (one warm-up run each, not counted), and for each
command the heavy modules the process had imported when it finished.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HEAVY = ("ot", "torch", "monai", "skimage", "sklearn", "optuna", "scipy", "matplotlib", "networkx")

DRIVER = r"""
import sys
from seqtransfer.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = {heavy!r}
sys.stderr.write("imported: " + ",".join(n for n in heavy if n in sys.modules) + "\n")
sys.exit(code)
"""


def time_command(argv: list[str], repeats: int) -> tuple[float, list[float], str]:
    """Median wall seconds over ``repeats`` fresh processes, every time, the imported heavy modules."""
    code = DRIVER.format(heavy=HEAVY)
    times = []
    imported = ""
    for i in range(repeats + 1):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=os.environ.copy()
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr}")
        imported = next(
            (line.removeprefix("imported: ") for line in proc.stderr.splitlines() if line.startswith("imported: ")), ""
        )
        if i:  # the first run warms the file cache
            times.append(elapsed)
    return statistics.median(times), times, imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    commands = {
        "seqtransfer --help": ["--help"],
        "seqtransfer select": ["select", "--graph", args.graph, "--target", args.target, "--uniform-performance"],
    }
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    for name, argv in commands.items():
        median, times, imported = time_command(argv, args.repeats)
        print(
            f"{name}: median {median:.2f} s over {len(times)} runs ({', '.join(f'{t:.2f}' for t in times)}); heavy "
            f"modules imported: {imported or 'none'}"
        )
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
