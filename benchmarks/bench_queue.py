"""The shipped queue through the engine vs a seed-style loop, side by side in one process.

Seed style = what the one-off research scripts did (reference report): one
experiment at a time, z of shape [1, D], ``torch.optim.Adam`` on z, a forward
and backward per step, ``.item()`` for the logged loss and similarity, a norm
projection after each step, and every ``decode_every`` steps (and at the end)
z and the prediction decoded through sonar's public
``EmbeddingToTextModelPipeline.predict``, one call each. It gets the same
backend objects, the same truncated input sequence and the same steps as the
engine, so the ratio measures the loop itself: batching, one host transfer per
step, batched decoding (bit-identical rows decoded once).

The runs alternate (seed, engine, seed, engine, ...) and the best round of
each is reported. Threads: the product takes torch's thread count from
EMBOPT_THREADS (README: 1 on small shared machines); this script does the same
and uses 1 when it is unset. Both sides always run with the same count.

    python benchmarks/bench_queue.py [CONFIG] [--steps N] [--rounds R] [--tiny]

``--tiny`` swaps the backend for random-init tiny cards (for machines where the
embedded default is not installed yet); the last line is ``speedup: X.XX``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@dataclasses.dataclass
class Timing:
    seconds: float
    first_step: float
    decoding: float
    steps: int
    final_sims: dict[str, float]

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


def seed_style(spec, models) -> Timing:
    import torch

    from engine.scoring.problem import build_problem

    space, predictor = models.space, models.predictor
    encoder, decoder = space.encoder_pipeline, space.decoder_pipeline  # the public sonar pipelines
    start = time.perf_counter()
    first_step = None
    decoding = 0.0
    total = 0
    finals = {}
    for experiment in spec.experiments:
        story = spec.story_of(experiment)
        problem = build_problem(story, space, predictor, need_tokens=False)
        radius = float(torch.cat([problem.story_norms, models.corpus_norms]).mean())
        z = encoder.predict([experiment.init], source_lang="eng_Latn").clone().float().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=experiment.lr)
        log = []
        for step in range(experiment.steps + 1):
            seq = torch.cat([problem.prefix[None], z[:, None].to(problem.prefix.dtype), problem.suffix[None]], dim=1)
            pred = predictor(seq)[0, problem.positions].float()
            sim = torch.nn.functional.cosine_similarity(pred, problem.targets, dim=-1).mean()
            loss = -sim
            log.append((step, loss.item(), sim.item(), z.norm().item()))
            if step % experiment.decode_every == 0 or step == experiment.steps:
                t = time.perf_counter()
                decoder.predict(z.detach(), target_lang="eng_Latn", beam_size=experiment.beam_size, max_seq_len=64)
                decoder.predict(pred.detach(), target_lang="eng_Latn", beam_size=experiment.beam_size, max_seq_len=64)
                decoding += time.perf_counter() - t
            if step == experiment.steps:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                z.mul_(radius / z.norm())
            total += 1
            if first_step is None:
                first_step = time.perf_counter() - start
        finals[experiment.name] = log[-1][2]
    return Timing(time.perf_counter() - start, first_step or 0.0, decoding, total, finals)


def engine_run(spec, models) -> Timing:
    from engine.events import Step
    from engine.run.runner import run_queue

    space = models.space
    decoding = 0.0
    first_step = None
    original = space.decode

    def timed_decode(*args, **kwargs):
        nonlocal decoding
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            decoding += time.perf_counter() - t

    def emit(event):
        nonlocal first_step
        if first_step is None and isinstance(event, Step):
            first_step = time.perf_counter() - start

    space.decode = timed_decode  # instance attribute: this run only
    try:
        start = time.perf_counter()
        result = run_queue(spec, emit, models=models)
        seconds = time.perf_counter() - start
    finally:
        del space.decode
    bad = [r for r in result.experiments if r["status"] != "done"]
    if bad:
        raise SystemExit(f"engine run failed: {bad[0]['name']}: {bad[0]['error']}")
    finals = {r["name"]: r["final_sim"] for r in result.experiments}
    return Timing(seconds, first_step or 0.0, decoding, sum(r["steps_done"] for r in result.experiments), finals)


def _tiny_backend(spec, out: Path | None):
    """Random-init tiny cards (built in a fresh process unless given).

    fairseq2 reads card folders once, before first use.
    """
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="bench-tiny-"))
        subprocess.run([sys.executable, "-m", "engine.mini.tiny", str(out)], check=True, cwd=REPO, capture_output=True)
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(out)
    backend = dataclasses.replace(
        spec.backend,
        encoder="tiny_encoder",
        decoder="tiny_decoder",
        tokenizer="tiny_encoder",
        predictor=str(out / "predictor"),
    )
    return dataclasses.replace(spec, backend=backend)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=str(REPO / "experiments.toml"))
    parser.add_argument("--steps", type=int, help="steps per experiment (default: the config's)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each (best is reported)")
    parser.add_argument("--tiny", action="store_true", help="random-init tiny cards instead of the config's backend")
    parser.add_argument("--tiny-dir", type=Path, help="with --tiny: a folder written by `python -m engine.mini.tiny`")
    args = parser.parse_args(argv)

    threads = int(os.environ.get("EMBOPT_THREADS", "1"))
    import torch

    torch.set_num_threads(threads)
    from engine.run.backend import load_models
    from engine.spec import load_spec

    spec = load_spec(args.config)
    if args.steps:
        spec = dataclasses.replace(
            spec, experiments=tuple(dataclasses.replace(e, steps=args.steps) for e in spec.experiments)
        )
    if args.tiny:
        spec = _tiny_backend(spec, args.tiny_dir)
    t = time.perf_counter()
    models = load_models(spec.backend)
    print(
        f"backend: {spec.backend.kind} ({spec.backend.encoder}), device {models.space.device}, dim {models.space.dim}, "
        f"torch threads {threads}, loaded in {time.perf_counter() - t:.1f}s (shared by both)"
    )
    print(
        f"queue: {len(spec.experiments)} experiments, {sum(e.steps for e in spec.experiments)} steps, "
        f"decode every {sorted({e.decode_every for e in spec.experiments})}"
    )
    engine_run(spec, models)  # warm-up: first-call allocations and lazy imports, timed by neither side

    seeds, engines = [], []
    for round_ in range(args.rounds):
        seeds.append(seed_style(spec, models))
        engines.append(engine_run(spec, models))
        print(f"round {round_ + 1}: seed-style {seeds[-1].seconds:.2f}s, engine {engines[-1].seconds:.2f}s")
    seed = min(seeds, key=lambda r: r.seconds)
    engine = min(engines, key=lambda r: r.seconds)
    mean_final = {
        label: sum(run.final_sims.values()) / len(run.final_sims) for label, run in (("seed", seed), ("engine", engine))
    }
    for label, run in (("seed-style", seed), ("engine", engine)):
        print(
            f"{label:>10}: {run.steps_per_s:8.1f} steps/s  {run.seconds:7.2f}s total  "
            f"first step after {run.first_step * 1000:7.1f} ms  "
            f"decoding {100 * run.decoding / run.seconds:5.1f}% of time"
        )
    # Same maths, but last-bit rounding differs between batch shapes and Adam's normalised steps amplify it,
    # so individual runs end at slightly different points; the means show both optimise equally well.
    print(f"mean final_sim: seed-style {mean_final['seed']:.4f}, engine {mean_final['engine']:.4f}")
    print(f"speedup: {seed.seconds / engine.seconds:.2f}")


if __name__ == "__main__":
    main()
