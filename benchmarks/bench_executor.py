"""Inline vs the ray executor on one queue: 4 stories x the shipped 7 experiments, wall time end to end.

Each side is the real command (``embopt-tui --no-ui``) in a fresh process, so
the times include interpreter start, model loading and, for ray, starting the
private cluster and its workers. Inline runs with 1 torch thread; ray with 2
workers of 1 thread each (on a machine with GPUs: one worker per GPU, and the
inline side on one GPU). The four stories are the shipped story with z at
sentences 0..3, so the queue makes four batches of seven, like the shipped one.
Steps: 600 (1200 for the shipped "longer" ones) by default, so that a private
cluster's start (~5-8 s here) and each worker's model loading weigh as they
do in a real study rather than swamping a 15-second queue.

Beside the two, the machine's own ceiling: as many plain inline processes as
workers, started at once, each on its share of the stories (no executor, no
cluster). Each side also prints its phases from its run's events: before the
first batch is handed out (model loading; for ray the cluster's start too),
the work, and after the last experiment (ray: the cluster's shutdown).

    python benchmarks/bench_executor.py [--workers N] [--steps N] [--repeat N] [--tiny]

``--repeat N`` runs the three sides N times, round after round, and prints the
medians: on a shared host the ceiling itself moves by 0.3x between rounds.
``--tiny`` uses the random-init tiny cards (where the embedded default is not
installed); the last line is ``speedup: X.XX`` (the median with ``--repeat``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STORIES = 4


def gpu_count() -> int:
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"], capture_output=True, text=True
    )
    return int(out.stdout.strip() or 0) if out.returncode == 0 else 0


def backend_toml(tiny_dir: Path | None, gpus: int) -> str:
    device = "cuda" if gpus else "cpu"
    if tiny_dir is None:
        return f'[backend]\nkind = "mini"\ndevice = "{device}"\n'
    return (
        f'[backend]\nkind = "mini"\ndevice = "{device}"\nencoder = "tiny_encoder"\ndecoder = "tiny_decoder"\n'
        f'tokenizer = "tiny_encoder"\npredictor = {json.dumps(str(tiny_dir / "predictor"))}\n'
    )


def queue_toml(backend: str, executor: str, steps: int | None, stories: range = range(STORIES)) -> str:
    shipped = tomllib.loads((REPO / "experiments.toml").read_text(encoding="utf-8"))
    sentences = shipped["stories"]["lily"]["sentences"]
    defaults = {k: v for k, v in shipped.get("defaults", {}).items() if k != "story"}
    parts = [backend, executor, "[defaults]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in defaults.items())]
    for i in stories:
        parts.append(f"[stories.s{i}]\nsentences = {json.dumps(sentences)}\noptimize = {i}\ntargets = [{i + 1}]\n")
    for i in stories:
        for experiment in shipped["experiments"]:
            row = {**experiment, "name": f"s{i}_{experiment['name']}", "story": f"s{i}"}
            if steps is not None:
                row["steps"] = steps * (2 if experiment.get("steps", 100) > 100 else 1)
            parts.append("[[experiments]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in row.items()))
    return "\n".join(parts)


def phases(run: Path) -> dict[str, float]:
    """Seconds of each phase of a run, from the times of its own events (events.jsonl)."""
    events = [json.loads(line) for line in (run / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    first = {}
    for e in events:
        first.setdefault(e["type"], e["time"])
    last = {e["type"]: e["time"] for e in events}
    start, work_start = events[0]["time"], first.get("batch_assigned", first["backend_ready"])
    out = {"before work": work_start - start, "work": last["experiment_finished"] - work_start}
    out["after work"] = last["run_finished"] - last["experiment_finished"]
    if "batch_assigned" in first:
        started = next(e["time"] for e in events if e.get("stage", "").startswith("loading models on"))
        out["cluster start"] = started - start
    return out


def command(config: Path, runs: Path) -> list[str]:
    return [sys.executable, "-m", "embopt_tui", "--no-ui", "--runs-dir", str(runs), str(config)]


def result_of(runs: Path) -> tuple[dict, dict[str, float]]:
    (run,) = sorted(p for p in runs.iterdir() if p.is_dir())
    return json.loads((run / "results.json").read_text(encoding="utf-8")), phases(run)


def check(config: Path, returncode: int, stdout: str, stderr: str) -> None:
    if returncode != 0:
        sys.exit(f"{config.name}: exit {returncode}\n{stdout[-2000:]}\n{stderr[-2000:]}")


def timed_run(config: Path, runs: Path, env: dict[str, str]) -> tuple[float, dict, dict[str, float]]:
    start = time.perf_counter()
    out = subprocess.run(command(config, runs), cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    check(config, out.returncode, out.stdout, out.stderr)
    return seconds, *result_of(runs)


def ceiling(work: Path, backend: str, steps: int, processes: int, gpus: int, env: dict[str, str]) -> float:
    """Wall time of ``processes`` inline runs at once, each on its share of the stories: what the machine allows."""
    procs = []
    start = time.perf_counter()
    for k in range(processes):
        config = work / f"share{k}.toml"
        share = range(k, STORIES, processes)
        config.write_text(queue_toml(backend, '[executor]\nkind = "inline"\n', steps, share), encoding="utf-8")
        env_k = {**env, "CUDA_VISIBLE_DEVICES": str(k)} if gpus else env
        procs.append(
            (
                config,
                subprocess.Popen(
                    command(config, work / f"runs-share{k}"),
                    cwd=REPO,
                    env=env_k,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    for config, proc in procs:
        stdout, stderr = proc.communicate()
        check(config, proc.returncode, stdout, stderr)
    return time.perf_counter() - start


def one_round(
    work: Path,
    backend: str,
    ray_executor: str,
    args: argparse.Namespace,
    processes: int,
    gpus: int,
    env: dict[str, str],
):
    """Inline, ray and the ceiling once, one after another: (wall seconds of each, results of each, phases of each)."""
    sides = {}
    for name, executor in (("inline", '[executor]\nkind = "inline"\n'), ("ray", ray_executor)):
        config = work / f"{name}.toml"
        config.write_text(queue_toml(backend, executor, args.steps), encoding="utf-8")
        sides[name] = timed_run(config, work / f"runs-{name}", env)
        seconds, results, spent = sides[name]
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in spent.items())
        print(f"{name:>6}: {seconds:6.1f} s wall, {STORIES * 7} experiments, status {results['status']} ({parts})")
    alone = ceiling(work, backend, args.steps, processes, gpus, env)
    print(f"  {processes} inline processes at once, each on 1/{processes} of the stories: {alone:6.1f} s wall")
    return sides, alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="ray workers on a CPU-only machine (default 2)")
    parser.add_argument("--steps", type=int, default=600, help="steps per experiment, twice for the longer ones (600)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the three sides; medians printed last (1)")
    parser.add_argument("--tiny", action="store_true", help="random-init tiny cards instead of the embedded default")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(REPO), "EMBOPT_THREADS": "1", "OMP_NUM_THREADS": "1"}
    tiny_dir = None
    if args.tiny:
        tiny_dir = Path(tempfile.mkdtemp(prefix="bench-executor-tiny-"))
        subprocess.run(
            [sys.executable, "-m", "engine.mini.tiny", str(tiny_dir)], cwd=REPO, check=True, capture_output=True
        )
        env["FAIRSEQ2_USER_ASSET_DIR"] = str(tiny_dir)
    gpus = gpu_count()
    backend = backend_toml(tiny_dir, gpus)
    ray_executor = (
        '[executor]\nkind = "ray"\nworkers = 0\ngpus_per_worker = 1\n'  # one per GPU
        if gpus
        else f'[executor]\nkind = "ray"\nworkers = {args.workers}\n'
    )
    processes = gpus or args.workers
    workers = f"{gpus} GPU workers" if gpus else f"{args.workers} workers x 1 thread"
    ratios: dict[str, list[float]] = {"speedup": [], "work": [], "ceiling": []}
    for round_ in range(1, args.repeat + 1):
        if args.repeat > 1:
            print(f"round {round_}/{args.repeat}")
        sides, alone = one_round(
            Path(tempfile.mkdtemp(prefix="bench-executor-")), backend, ray_executor, args, processes, gpus, env
        )
        inline_rows = {r["name"]: r for r in sides["inline"][1]["experiments"]}
        worst = max(abs(r["final_sim"] - inline_rows[r["name"]]["final_sim"]) for r in sides["ray"][1]["experiments"])
        ratios["speedup"].append(sides["inline"][0] / sides["ray"][0])
        ratios["work"].append(sides["inline"][2]["work"] / sides["ray"][2]["work"])
        ratios["ceiling"].append(sides["inline"][0] / alone)
        print(f"ray: {workers}; largest final_sim difference from inline: {worst:.2e}")
        print(
            f"ray vs inline {ratios['speedup'][-1]:.2f}x; work phase alone (first batch handed out to last experiment"
            f" finished) {ratios['work'][-1]:.2f}x; this machine's ceiling ({processes} independent processes, no"
            f" executor) {ratios['ceiling'][-1]:.2f}x"
        )
    if args.repeat > 1:
        med = {k: statistics.median(v) for k, v in ratios.items()}
        print(
            f"medians of {args.repeat} rounds: ray vs inline {med['speedup']:.2f}x, work phase {med['work']:.2f}x,"
            f" ceiling {med['ceiling']:.2f}x (ray vs inline, each round: "
            + ", ".join(f"{x:.2f}" for x in ratios["speedup"])
            + ")"
        )
    print(f"speedup: {statistics.median(ratios['speedup']):.2f}")


if __name__ == "__main__":
    main()
