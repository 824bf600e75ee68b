"""Cost per experiment against the length of the queue: does anything grow with it?

Queues of N short experiments (default: 100, 1,000 and 5,000; ``--steps`` each,
32 to a batch, all on one story) run through the real session and run
directory, headless, in one process with the models loaded once. For each N it
prints the seconds per experiment, the run directory's size and bytes per
experiment; the last lines are each N's cost per experiment as a ratio of the
smallest queue's (issue 17 asks <= 1.5x at 5,000 against 100).

    python benchmarks/bench_scale.py [--sizes 100,1000,5000] [--steps 5] [--tiny]

``--tiny`` runs the random-init tiny cards (for machines where the embedded default is not installed).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

INITS = ("I like cheese.", "There was a boy named Tom.", "The dog ran to the park.", "Hi.")


def config_text(n: int, steps: int, backend: str) -> str:
    """N experiments on the Lily story, differing in init text and learning rate."""
    lines = [
        backend,
        f"[defaults]\nsteps = {steps}\ndecode_every = {steps}\n",
        "[stories.lily]\nsentences = " + json.dumps(_lily()) + "\n",
    ]
    for i in range(n):
        lr = 0.005 * (1 + i % 7)
        lines.append(f'[[experiments]]\nname = "e{i:05d}"\ninit = "{INITS[i % len(INITS)]}"\nlr = {lr}\n')
    return "\n".join(lines)


def _lily() -> list[str]:
    import tomllib

    return tomllib.loads((REPO / "experiments.toml").read_text(encoding="utf-8"))["stories"]["lily"]["sentences"]


def tiny_backend() -> str:
    folder = Path(tempfile.mkdtemp(prefix="embopt-tiny-"))
    atexit.register(shutil.rmtree, folder, True)
    subprocess.run([sys.executable, "-m", "engine.mini.tiny", str(folder)], check=True, cwd=REPO)
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(folder)
    predictor = json.dumps(str(folder / "predictor"))
    return (
        '[backend]\nencoder = "tiny_encoder"\ndecoder = "tiny_decoder"\ntokenizer = "tiny_encoder"\n'
        f'predictor = {predictor}\ndevice = "cpu"\n'
    )


def run_once(n: int, steps: int, backend: str, models, workdir: Path) -> tuple[float, int]:
    """(seconds of the queue, bytes of its run directory)."""
    from engine.run.session import Session

    config = workdir / f"scale-{n}.toml"
    config.write_text(config_text(n, steps, backend), encoding="utf-8")
    session = Session.start(config, workdir / "runs")
    session.models = models
    start = time.perf_counter()
    result = session.run()
    seconds = time.perf_counter() - start
    assert result.status == "done", result.status
    size = sum(p.stat().st_size for p in session.run_dir.iterdir() if p.is_file())
    return seconds, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="queue lengths, comma-separated")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="random-init tiny cards instead of the embedded default")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import torch

    torch.set_num_threads(int(os.environ.get("EMBOPT_THREADS", "1")))
    os.environ.setdefault("EMBOPT_THREADS", str(torch.get_num_threads()))
    backend = tiny_backend() if args.tiny else '[backend]\nkind = "mini"\ndevice = "cpu"\n'

    from engine.run.backend import load_models
    from engine.spec import parse_spec

    models = load_models(parse_spec(config_text(1, args.steps, backend)).backend)
    per: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="embopt-scale-") as tmp:
        run_once(32, args.steps, backend, models, Path(tmp))  # warm-up: first calls of every kernel
        for n in sizes:
            seconds, size = run_once(n, args.steps, backend, models, Path(tmp))
            per[n] = seconds / n
            print(
                f"{n:>6} experiments: {seconds:8.1f} s, {per[n] * 1000:7.2f} ms per experiment, "
                f"run directory {size / 1e6:8.2f} MB ({size / n / 1e3:.1f} kB per experiment)",
                flush=True,
            )
    base = sizes[0]
    for n in sizes[1:]:
        print(f"cost per experiment at {n} / at {base}: {per[n] / per[base]:.2f}x")


if __name__ == "__main__":
    main()
