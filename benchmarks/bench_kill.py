"""kill -9 at random points, then --resume: is anything that finished ever lost, or any result different?

One uninterrupted headless run of a small queue is the reference (three batches: cosine, the cycle term,
decoder_ce, token swap). Then chains of runs: each process is started (a fresh run or ``--resume`` of the
chain's run directory), killed with SIGKILL at a random moment (20% of the time anywhere from its start,
model loading included; otherwise once its backend is ready, somewhere in what is left of a full run), and
checked: every experiment that had finished before the kill is still finished, and every finished result
equals the reference's (every field but ``seconds``). A chain ends when a resume completes; its results
must equal the reference. Kill points are counted by what the run was doing (the last event on disk) and
by whether a summary was half-written (a temp file left beside it).

    python benchmarks/bench_kill.py [--kills 100] [--seed 0]

Not part of the test suite (about 20 minutes on 2 cores); tests/cli/test_faults_cli.py runs three kill points.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

QUEUE = """[backend]
kind = "mini"
device = "cpu"

[defaults]
steps = 40
decode_every = 10

[stories.lily]
sentences = ["Once upon a time, there was a little girl named Lily.", "She loved to play outside with her toys.",
             "One day, she saw a big tree in the sky."]
targets = [1, 2]

[stories.tom]
sentences = ["There was a boy named Tom.", "He loved to play with his ball.", "One day, he saw a big kite in the park."]

[[experiments]]
name = "cosine"
story = "lily"
init = "I like cheese."

[[experiments]]
name = "cycle"
story = "lily"
init = "There was a boy named Tom."
lr = 0.05
steps = 60
objective = {cosine = 1.0, cycle = 0.3}

[[experiments]]
name = "snap"
story = "lily"
init = "The dog ran."
snap_every = 15

[[experiments]]
name = "ce"
story = "tom"
init = "I like cheese."
steps = 50
objective = {cosine = 1.0, decoder_ce = 0.1}

[[experiments]]
name = "cycle_tom"
story = "tom"
init = "Begin of text."
steps = 80
objective = {cosine = 1.0, cycle = 0.5}

[[experiments]]
name = "swap"
story = "tom"
init = "I like cheese."
method = "token_swap"
steps = 6
decode_every = 3
search_width = 16
"""


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "EMBOPT_THREADS": "1", "OMP_NUM_THREADS": "1"}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "embopt_tui", "--no-ui", *args]


def events(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    try:
        raw = (run_dir / "events.jsonl").read_bytes()
    except FileNotFoundError:
        return out
    for line in raw.split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def finished(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The results events.jsonl holds (the last finish of each experiment), without ``seconds`` and ``z``."""
    out = {}
    for e in events(run_dir):
        if e.get("type") == "experiment_finished" and e.get("status") == "done":
            out[e["name"]] = {k: v for k, v in e["result"].items() if k != "seconds"}
    return out


def rows(run_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    return {r["name"]: {k: v for k, v in r.items() if k != "seconds"} for r in data["experiments"]}


def same(got: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(got.get(k) == v for k, v in want.items() if k not in ("seconds", "best"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="embopt-kill-"))
    (work / "queue.toml").write_text(QUEUE, encoding="utf-8")

    began = time.monotonic()
    subprocess.run(
        command("--runs-dir", "reference", "queue.toml"), cwd=work, env=env(), check=True, capture_output=True
    )
    full_s = time.monotonic() - began
    (reference_dir,) = (work / "reference").iterdir()
    reference = rows(reference_dir)
    reference_events = finished(reference_dir)
    times = {e["type"]: e["time"] for e in events(reference_dir)}
    work_s = times["run_finished"] - times["backend_ready"]
    print(f"reference run: {full_s:.1f} s ({work_s:.1f} s after the models loaded), {len(reference)} experiments")

    kills = lost = different = chains = completed_equal = mid_write = 0
    phases: collections.Counter[str] = collections.Counter()
    while kills < args.kills:
        chains += 1
        runs = work / f"chain{chains}"
        run_dir: Path | None = None
        while True:
            argv = ("--resume", str(run_dir)) if run_dir else ("--runs-dir", str(runs), "queue.toml")
            before = finished(run_dir) if run_dir else {}
            ready_before = sum(e.get("type") == "backend_ready" for e in events(run_dir)) if run_dir else 0
            proc = subprocess.Popen(
                command(*argv), cwd=work, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            started = time.monotonic()
            kill_at = started + rng.uniform(0.0, full_s) if rng.random() < 0.2 else None
            while proc.poll() is None:
                if run_dir is None and runs.exists():
                    run_dir = next((d for d in runs.iterdir() if d.is_dir()), None)
                if kill_at is None and run_dir is not None:
                    ready = sum(e.get("type") == "backend_ready" for e in events(run_dir))
                    if ready > ready_before:  # this process's models are loaded: kill somewhere in the work
                        kill_at = time.monotonic() + rng.uniform(0.0, work_s)
                if kill_at is not None and time.monotonic() >= kill_at:
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.005)
            proc.wait()
            if proc.returncode != -signal.SIGKILL:  # ran to its end before the kill came
                err = proc.stderr.read().decode() if proc.stderr else ""
                assert proc.returncode == 0, err
                assert run_dir is not None
                if rows(run_dir) == reference:
                    completed_equal += 1
                else:
                    different += 1
                    print(f"chain {chains}: completed run differs from the reference", flush=True)
                break
            kills += 1
            if run_dir is None:  # killed before the run directory existed
                phases["before the run directory"] += 1
                continue
            log = events(run_dir)
            phases[(log[-1].get("type") if log else "empty events") or "?"] += 1
            mid_write += any(p.name.endswith(".tmp") for p in run_dir.iterdir())
            after = finished(run_dir)
            lost += len(set(before) - set(after))
            different += sum(not same(after[n], reference_events[n]) for n in after)
            if kills >= args.kills:
                break
            if kills % 10 == 0:
                print(f"{kills} kills, {lost} finished lost, {different} different so far", flush=True)
        if kills >= args.kills and run_dir is not None:  # finish the last chain too
            done = subprocess.run(command("--resume", str(run_dir)), cwd=work, env=env(), capture_output=True)
            assert done.returncode == 0, done.stderr
            completed_equal += rows(run_dir) == reference
            different += rows(run_dir) != reference
    print(f"kills: {kills} in {chains} chains ({time.monotonic() - began:.0f} s)")
    print("kill points (last event on disk): " + ", ".join(f"{k} {v}" for k, v in phases.most_common()))
    print(f"killed with a summary half-written (a temp file left): {mid_write}")
    print(f"finished experiments lost: {lost}")
    print(f"results different from the uninterrupted run: {different}")
    print(f"chains completed by --resume equal to the reference: {completed_equal}/{chains}")


if __name__ == "__main__":
    main()
