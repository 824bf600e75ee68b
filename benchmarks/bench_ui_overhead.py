"""What the dashboard costs the engine: the shipped queue with the dashboard vs `--no-ui`.

Both run as real `embopt-tui` processes in a pseudo-terminal (the dashboard
with EMBOPT_TUI_EXIT_WHEN_DONE=1 so it closes when the queue ends; headless
shows its Rich progress there), alternating so drift in machine load hits both
alike. Wall time covers the whole process: start-up, model loading, the queue,
saving. Prints each run, the medians, the CPU-time ratio (less sensitive to
other load on a shared machine) and last `overhead: X.XX` (median wall time,
dashboard / headless; target <= 1.10).

    .venv/bin/python benchmarks/bench_ui_overhead.py [--rounds 5] [--config experiments.toml]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect

REPO = Path(__file__).resolve().parent.parent


def queue_seconds(runs_dir: Path) -> float:
    """From the first experiment started to the run finished, by the engine's own event times."""
    (run_dir,) = runs_dir.iterdir()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    start = next(e["time"] for e in events if e["type"] == "experiment_started")
    end = max(e["time"] for e in events if e["type"] == "run_finished")
    return end - start


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(config: Path, runs_dir: Path, *, ui: bool, size: tuple[int, int]) -> tuple[float, float, float | None]:
    """Wall and CPU seconds (all threads) of one whole `embopt-tui` process; for the dashboard, its first frame."""
    env = dict(os.environ, TERM="xterm-256color", PYTHONPATH=str(REPO))
    env.setdefault("EMBOPT_THREADS", "1")
    env.pop("EMBOPT_TUI_STABLE", None)
    args = ["--runs-dir", str(runs_dir), str(config)]
    if ui:
        env["EMBOPT_TUI_EXIT_WHEN_DONE"] = "1"
    else:
        args.insert(0, "--no-ui")
    command = str(Path(sys.executable).parent / "embopt-tui")
    cpu = children_cpu()
    start = time.perf_counter()
    child = pexpect.spawn(command, args, cwd=str(REPO), env=env, dimensions=size, timeout=1800)
    first_frame = None
    if ui:
        child.expect("loading models")  # the header, drawn before the engine thread imports torch
        first_frame = time.perf_counter() - start
    child.expect(pexpect.EOF)  # reading all output, as a terminal would
    child.close()
    wall = time.perf_counter() - start
    if child.exitstatus != 0:
        raise SystemExit(f"{'dashboard' if ui else 'headless'} run exited {child.exitstatus}: {child.before!r}")
    return wall, children_cpu() - cpu, first_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each face (default 5)")
    parser.add_argument("--config", type=Path, default=REPO / "experiments.toml")
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--cols", type=int, default=100)
    args = parser.parse_args()

    runs_dir = Path(tempfile.mkdtemp(prefix="embopt-bench-ui-"))
    walls: dict[str, list[float]] = {"dashboard": [], "headless": []}
    cpus: dict[str, list[float]] = {"dashboard": [], "headless": []}
    first_frames: list[float] = []
    queues: dict[str, list[float]] = {"dashboard": [], "headless": []}
    try:
        for i in range(args.rounds):
            # Alternate which goes first so neither always gets the warmer page cache.
            order = ("dashboard", "headless") if i % 2 == 0 else ("headless", "dashboard")
            for face in order:
                size = (args.rows, args.cols)
                run_dir = runs_dir / f"{face}-{i}"
                wall, cpu, first_frame = run_once(args.config, run_dir, ui=face == "dashboard", size=size)
                queues[face].append(queue_seconds(run_dir))
                walls[face].append(wall)
                cpus[face].append(cpu)
                if first_frame is not None:
                    first_frames.append(first_frame)
                print(
                    f"round {i + 1} {face:9s} {wall:7.2f} s wall {cpu:7.2f} s cpu {queues[face][-1]:7.2f} s queue",
                    flush=True,
                )
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)
    dashboard, headless = statistics.median(walls["dashboard"]), statistics.median(walls["headless"])
    cpu_ratio = statistics.median(cpus["dashboard"]) / statistics.median(cpus["headless"])
    where = f"{args.config.name}, {args.rows}x{args.cols} pty"
    print(f"median wall: dashboard {dashboard:.2f} s, headless {headless:.2f} s ({where})")
    print(f"cpu (all threads, median): dashboard / headless = {cpu_ratio:.2f}")
    queue_ratio = statistics.median(queues["dashboard"]) / statistics.median(queues["headless"])
    print(f"queue time (first experiment to run end, median): dashboard / headless = {queue_ratio:.2f}")
    print(f"dashboard first frame after start (median): {statistics.median(first_frames):.2f} s")
    print(f"overhead: {dashboard / headless:.2f}")


if __name__ == "__main__":
    main()
