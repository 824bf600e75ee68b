"""Every method at the real models' shapes, on CPU or CUDA: seconds per step by phase, peak memory, FLOP rate.

Random-init models (nothing downloaded, nothing trained: decodes are gibberish, shapes
and code paths are real): SONAR's ``basic`` text encoder and decoder (model_dim 1024,
24 layers, 16 heads, ffn 8192) around a tokenizer of SONAR's width (256,206 ids: the
mini tokenizer's pieces plus filler pieces no text tokenises to, so the embedding
tables, the decoder's output layer, decoder_ce's logits and token swap's one-hot are
real size), and a predictor shaped like SONAR-LLM 100M, 900M or 1.3B. Every case runs
the story and experiments of ``experiments.toml`` through the engine's
``optimize_batch``, the way a queue runs them.

Per case: seconds per step split by phase (benchmarks/phases.py: encode, encode (soft)
and its backward, predict and its backward, score (the predictor without gradients:
init, candidates, bank chunks), decoder CE and its backward, decode, other), the peak
memory (RSS on CPU, max_memory_allocated on CUDA; the weights included), and the FLOP
rate of the model phases as a share of this machine's rate for a large matrix product
in the same dtype, measured in the same run. Besides the cases: the candidate mask of
token swap built the old way (a decode per id) and the new, the predictor alone at 8
and 64 rows for each shape, and (``--compare-bank``) the bank encoded with the old
batching and the new. A table on stdout, everything in a JSON file (``--json``).

    python benchmarks/real_shape.py --quick            # 900M shape, float32 and bfloat16, every case
    python benchmarks/real_shape.py                    # 100M, 900M and 1.3B; a bigger bank, more steps
    python benchmarks/real_shape.py --compare-decode   # the shipped gradient queue, old decoding vs new, side by side
    python benchmarks/real_shape.py --tiny             # the same code at tiny shapes on CPU (the test suite runs it)

Threads: EMBOPT_THREADS when set, else torch's default. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

_LLAMA = {  # what SONAR-LLM's llama_configs share
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-06,
    "pretraining_tp": 1,
    "tie_word_embeddings": True,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
}
# SonarLLM_100M.json and SonarLLM_900M.json of the public SONAR-LLM training code (github.com/Pabiya/SONAR-LLM).
# The 1.3B model's config is not published there and its hub config.json could not be read where this was
# written; public wrappers project to a 2048-wide Llama, so it is taken as Llama-3.2-1B's body (16 layers,
# 32 heads in 8 key/value groups, ffn 8192). If the hub's config differs, trust it.
PREDICTORS: dict[str, dict[str, Any]] = {
    "100m": {
        **_LLAMA,
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 8,
        "num_attention_heads": 16,
        "head_dim": 32,
    },
    "900m": {
        **_LLAMA,
        "hidden_size": 1536,
        "intermediate_size": 6144,
        "num_hidden_layers": 17,
        "num_attention_heads": 32,
        "head_dim": 64,
    },
    "1.3b": {
        **_LLAMA,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
    },
}
MODEL_PHASES = ("encode", "encode (soft)", "predict", "score", "decoder CE", "decode", "bank encoding", "fluency")
# The fluency model of fluent_swap: GPT-2 small's body (124M with its own 50,257-word table; here the mini LM's
# word-level tokenizer, so the output layer is small), random-init like the rest. gpt2 is the generic choice of
# the issue; roneneldan/TinyStories-33M is smaller (GPT-Neo, 768 wide, 4 layers).
FLUENCY_SHAPE = {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024}
SHOWN = (  # the table's phase columns: (heading, phases summed)
    ("encode", ("encode",)),
    ("soft+bwd", ("encode (soft)", "encode (soft) backward")),
    ("predict", ("predict",)),
    ("pred bwd", ("predict backward",)),
    ("score", ("score",)),
    ("CE+bwd", ("decoder CE", "decoder CE backward")),
    ("decode", ("decode",)),
    ("fluency", ("fluency",)),
    ("other", ("other",)),
)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    method: str = "gradient"
    objective: tuple[tuple[str, float], ...] = (("cosine", 1.0),)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    rows: int | None = None  # experiments of the shipped queue (None: all seven)
    bank: bool = False
    fluency: bool = False  # needs the fluency model


def cases(quick: bool) -> list[Case]:
    few = 2 if quick else None  # the side cases run two experiments in --quick, the whole queue otherwise
    width = {"search_width": 8 if quick else 64}
    return [
        Case("gradient cosine"),
        Case("gradient decoder_ce", objective=(("decoder_ce", 1.0),)),
        Case("snapping", options={"snap_every": 2}, rows=few),
        Case("nearest", options={"nearest": True}, rows=few, bank=True),
        Case("cycle", objective=(("cosine", 1.0), ("cycle", 0.1)), rows=few),
        Case("bank_search", method="bank_search", rows=few, bank=True),
        Case("bank_swap", method="bank_swap", options=width, rows=few, bank=True),
        Case("token_swap cosine", method="token_swap", options=width, rows=few),
        Case("token_swap decoder_ce", method="token_swap", objective=(("decoder_ce", 1.0),), options=width, rows=few),
        Case(
            "token_swap + fluency",
            method="token_swap",
            objective=(("cosine", 1.0), ("fluency", 0.1)),
            options=width,
            rows=few,
            fluency=True,
        ),
        Case(
            "fluent_swap",
            method="fluent_swap",
            options={"population": 2, "search_width": 4} if quick else {},
            rows=few,
            fluency=True,
        ),
    ]


@dataclasses.dataclass
class Bench:
    """What every case of one shape and dtype shares."""

    space: Any  # TimedSpace
    predictor: Any  # TimedPredictor
    clock: Any
    memory: Any
    story: Any
    experiments: list[Any]
    bank: Any
    matmul: Any  # benchmarks.phases.MatmulRate in this dtype, sampled before each case
    shapes: Any  # engine.run.sizing.Shapes of these models
    tokens: Any  # engine.run.sizing.StoryTokens of the story
    fluency: Any = None  # engine.models.fluency.FluencyModel around a TimedLM, for the cases that need one


def _experiment(base: Any, case: Case, steps: int, decode_every: int) -> Any:
    from engine.methods import METHODS
    from engine.spec import Objective

    options = METHODS[case.method].options(**case.options)
    return dataclasses.replace(
        base,
        method=case.method,
        objective=Objective(case.objective),
        options=options,
        steps=steps,
        decode_every=decode_every,
        bank="bank.txt" if case.bank else None,
    )


def fluency_model(tiny: bool, device: Any, dtype: Any) -> Any:
    """A random-init GPT-2 (``FLUENCY_SHAPE``, or the mini LM's own shape with ``tiny``) around the mini LM's
    tokenizer, as the engine's FluencyModel."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from engine.mini.lm import LM_DIR
    from engine.models.fluency import FluencyModel

    tokenizer = AutoTokenizer.from_pretrained(str(LM_DIR))
    shipped = GPT2Config.from_pretrained(str(LM_DIR))
    config = shipped if tiny else GPT2Config(**{**shipped.to_dict(), **FLUENCY_SHAPE})
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).to(device=device, dtype=dtype).eval().requires_grad_(False)
    return FluencyModel(model, tokenizer, "gpt2-shaped (random)", str(LM_DIR))


def run_case(bench: Bench, case: Case, steps: int, decode_every: int, decoding: Any) -> dict[str, Any]:
    from engine.run.batches import optimize_batch
    from engine.run.sizing import row_bytes

    experiments = [_experiment(e, case, steps, decode_every) for e in bench.experiments[: case.rows]]
    per_row = row_bytes(bench.shapes, bench.tokens, experiments)
    bench.matmul.sample()
    bench.clock.reset()
    bench.memory.reset()
    resident = bench.memory.now()
    start = time.perf_counter()
    results = optimize_batch(
        experiments,
        bench.story,
        bench.space,
        bench.predictor,
        emit=lambda event: None,
        on_finished=lambda row: None,
        bank=bench.bank if case.bank else None,
        fluency=bench.fluency if case.fluency else None,
        decoding=decoding,
    )
    wall = time.perf_counter() - start
    phases = bench.clock.snapshot()
    failed = [f"{r['name']}: {r['status']} {r.get('error') or ''}".strip() for r in results if r["status"] != "done"]
    return {
        "case": case.name,
        "method": case.method,
        "objective": dict(case.objective),
        "options": case.options,
        "rows": len(experiments),
        "steps": max(r["steps_done"] for r in results),
        "seconds": wall,
        "peak_bytes": bench.memory.peak(),
        "weights_bytes": bench.shapes.weights_bytes,
        "resident_bytes": resident,  # in use when the case started: the weights, the bank, the process
        "row_bytes": per_row,  # engine.run.sizing's estimate of what a row adds at its peak
        "phases": phases,
        "failed": failed,
    }


def add_shares(row: dict[str, Any], matmul: float) -> dict[str, Any]:
    """The FLOP rate of the predictor's phases and of every model phase, as shares of ``matmul`` (FLOP/s)."""
    phases = row["phases"]
    model = [p for p in phases if p.split(" backward")[0] in MODEL_PHASES]
    row["predictor_share"] = _share(phases, ("predict", "predict backward"), matmul)
    row["model_share"] = _share(phases, model, matmul)
    return row


def _share(phases: dict[str, dict[str, float]], names: Any, matmul: float) -> float | None:
    seconds = sum(phases[n]["seconds"] for n in names if n in phases)
    flops = sum(phases[n]["flops"] for n in names if n in phases)
    return flops / seconds / matmul if seconds > 0 else None


def _gb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 1e9:.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def table_head() -> str:
    head = f"{'case':<34} {'rows':>4} {'steps':>5} {'s/step':>7} " + " ".join(f"{h:>8}" for h, _ in SHOWN)
    return head + f" {'peak GB':>7} {'added':>6} {'est.':>6} {'pred FLOP':>9} {'all FLOP':>8}"


def table_line(r: dict[str, Any]) -> str:
    """A case's seconds per step by phase; its peak memory, what it added to the memory in use once the models
    were built, and the memory model's estimate of that; the FLOP rate of the predictor's and all model phases."""
    steps = max(r["steps"], 1)
    cells = [sum(r["phases"].get(p, {}).get("seconds", 0.0) for p in names) / steps for _, names in SHOWN]
    line = f"{r['case']:<34} {r['rows']:>4} {r['steps']:>5} {r['seconds'] / steps:>7.2f} "
    line += " ".join(f"{c:>8.2f}" for c in cells)
    above = r["peak_bytes"] - r["resident_bytes"]
    line += f" {_gb(r['peak_bytes']):>7} {_gb(above):>6} {_gb(r['row_bytes'] * r['rows']):>6}"
    line += f" {_pct(r.get('predictor_share')):>9} {_pct(r.get('model_share')):>8}"
    return line + ("  FAILED: " + "; ".join(r["failed"]) if r["failed"] else "")


CARDS_GB = (24, 40, 80, 141)
CUDA_CONTEXT = 1_000_000_000  # what a CUDA context and the libraries' workspaces take before any tensor


def memory_model(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case: the memory model's bytes a row, and the largest batch on each card beside these models."""
    from engine.run.sizing import rows_that_fit

    out = []
    print(f"memory model: {'case':<24} {'MB a row':>9} " + " ".join(f"{c:>6} GB" for c in CARDS_GB))
    for r in rows:
        free = [c * 1e9 - r["weights_bytes"] - CUDA_CONTEXT for c in CARDS_GB]
        fits = [rows_that_fit(int(f), r["row_bytes"], most=10**9) if f > 0 else 0 for f in free]
        out.append({"case": r["case"], "row_bytes": r["row_bytes"], "rows": dict(zip(CARDS_GB, fits))})
        print(f"{'':<14}{r['case']:<24} {r['row_bytes'] / 1e6:>9.1f} " + " ".join(f"{n:>9,}" for n in fits))
    return out


def _old_mask(space: Any, width: int) -> Any:
    """The candidate mask as token swap built it before: every id decoded on its own."""
    import re

    import torch

    info = space.tokenizer.vocab_info
    special = {info.pad_idx, info.unk_idx, info.bos_idx, info.eos_idx}
    mask = torch.zeros(width, dtype=torch.bool)
    for i in range(info.size):
        if i in special:
            continue
        text = space.text_of(torch.tensor([i]))
        mask[i] = bool(text.strip()) and not re.match(r"^__\w+__$", text.strip())
    return mask


def measure_mask(space: Any) -> dict[str, Any]:
    """Token swap's candidate mask, the old way and the new, side by side."""
    import torch

    from engine.models.vocab import candidate_mask

    width = int(space.token_table.shape[0])
    start = time.perf_counter()
    new = candidate_mask(space.tokenizer, width)
    new_s = time.perf_counter() - start
    start = time.perf_counter()
    old = _old_mask(space, width)
    old_s = time.perf_counter() - start
    out = {"ids": width, "old_seconds": old_s, "new_seconds": new_s, "same": bool(torch.equal(old, new))}
    print(f"candidate mask, {width:,} ids: decoded one by one {old_s:.2f}s, from the piece table {new_s:.2f}s", end="")
    print(f" (same mask: {out['same']})")
    return out


def predictor_sweep(names: list[str], device: Any, dtype: Any, matmul: Any, tiny: bool) -> list[dict[str, Any]]:
    """Each predictor shape alone, forward and backward on [rows, 1, D] as the shipped story gives it (best of 3)."""
    import torch

    from benchmarks.phases import FlopCounter, PhaseClock
    from engine.mini.models import llama_config
    from engine.mini.tiny import TINY
    from engine.models.predictor import PredictorConfig, SonarLLMPredictor
    from engine.scoring.problem import fast_forward

    out = []
    for name in names:
        config = llama_config(TINY) if tiny else PREDICTORS[name]
        dim = TINY.model_dim if tiny else 1024
        torch.manual_seed(0)
        with torch.device(device):
            predictor = SonarLLMPredictor(PredictorConfig(dict(config), dim)).to(dtype).eval().requires_grad_(False)
        forward = fast_forward(predictor)
        params = sum(p.numel() for p in predictor.parameters())
        for rows in (8, 64):
            x = torch.randn(rows, 1, dim, device=device, dtype=dtype)
            clock = PhaseClock(device)
            best: dict[str, dict[str, float]] = {}
            for _ in range(4):  # the first round sets kernels up; the best of the other three is kept
                clock.reset()
                matmul.sample(0.25)
                with FlopCounter(clock):
                    xa = x.clone().requires_grad_(True)
                    with clock.phase("predict"):
                        y = forward(xa)
                    with clock.phase("predict backward"):
                        torch.autograd.grad(y.float().square().sum(), xa)
                phases = clock.snapshot()
                if best:
                    best = {k: min(best[k], phases[k], key=lambda v: v["seconds"]) for k in best}
                else:
                    best = {k: phases[k] for k in ("predict", "predict backward")}
            out.append({"predictor": name, "params": params, "rows": rows, "phases": best})
        del predictor, forward
    return out


def sweep_line(s: dict[str, Any], matmul: float, tiny: bool) -> str:
    fwd, bwd = s["phases"]["predict"]["seconds"], s["phases"]["predict backward"]["seconds"]
    share = _share(s["phases"], ("predict", "predict backward"), matmul)
    s["share"] = share
    name = "tiny" if tiny else s["predictor"]
    return (
        f"  {name:>5} ({s['params'] / 1e6:.0f}M parameters), {s['rows']:>2} rows: forward {fwd * 1e3:.0f} ms,"
        f" backward {bwd * 1e3:.0f} ms: {_pct(share)} of the matmul rate"
    )


def compare_bank(space: Any, texts: list[str], clock: Any) -> dict[str, Any]:
    """The bank's sentences encoded with the old batching (sorted by characters, 256 a call) and the new."""
    import torch

    from engine.banks.bank import plan_batches

    lengths = space.source_lengths(texts)
    plans = {"old": plan_batches([len(t) for t in texts], 256, None), "new": plan_batches(lengths, 256)}
    out: dict[str, Any] = {"sentences": len(texts), "tokens": sum(lengths)}
    for name, plan in plans.items():
        padded = sum(len(b) * max(lengths[i] for i in b) for b in plan)
        clock.reset()
        with torch.inference_mode(), clock.phase("bank encoding"):
            for batch in plan:
                space.encode([texts[i] for i in batch])
        seconds = clock.snapshot()["bank encoding"]["seconds"]
        out[name] = {"calls": len(plan), "padded_tokens": padded, "seconds": seconds}
        print(f"  bank encoding, {name} batching: {len(plan)} calls, {padded:,} tokens padded", end="")
        print(f" ({1 - out['tokens'] / padded:.1%} padding), {seconds:.1f}s")
    return out


def summary(
    dtype: str,
    rate: float,
    samples: list[float],
    sweep: list[dict[str, Any]],
    entries: list[dict[str, Any]],
    tiny: bool,
) -> None:
    """A dtype's figures, FLOP shares against the best matmul sample of the run, and its memory model."""
    low, high = min(samples) / 1e9, max(samples) / 1e9
    print(
        f"\n== {dtype} summary: matmul rate {high:.0f} GFLOP/s, the best of {len(samples)} samples (lowest {low:.0f})"
    )
    if sweep:
        print("predictors alone, forward and backward on [rows, 1, D] (the shipped story: one position):")
        for s in sweep:
            print(sweep_line(s, rate, tiny))
    for entry in entries:
        print(f"{entry['predictor']}: models built in {entry['build_seconds']:.0f}s")
        if "bank_encoding" in entry:
            encoding = entry["bank_encoding"]
            encoding["share"] = _share({"b": encoding}, ["b"], rate)
            print(f"  bank encoding: {encoding['seconds']:.1f}s, {_pct(encoding['share'])} of the matmul rate")
        if not entry["cases"]:
            continue
        print(table_head())
        for row in entry["cases"]:
            print(table_line(add_shares(row, rate)))
        weights = entry["cases"][0]["weights_bytes"]
        print(f"weights {_gb(weights)} GB in {dtype}; a CUDA context taken as 1 GB;")
        entry["memory_model"] = memory_model(entry["cases"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 900M shape, small bank, 2 steps (22 min on 2 cores)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (what the test suite runs)")
    parser.add_argument("--predictors", nargs="+", choices=list(PREDICTORS), help="shapes to run every case at")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--cases", nargs="+", help="case names to run (default: all)")
    parser.add_argument("--steps", type=int, help="steps per experiment (default 2; 4 without --quick)")
    parser.add_argument("--decode-every", type=int, default=2)
    parser.add_argument("--bank", type=int, help="bank sentences (default 128 with --quick, 2,000 otherwise)")
    parser.add_argument("--legacy-decode", action="store_true", help="decode as before: a 64-token cap, every row")
    parser.add_argument(
        "--compare-decode", action="store_true", help="only the gradient cosine case, old decoding and new"
    )
    parser.add_argument("--compare-bank", action="store_true", help="encode the bank with the old batching and new")
    parser.add_argument("--sweep-only", action="store_true", help="only the predictors alone (no SONAR models built)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", type=Path, help="where to write every figure (default: a temporary file)")
    args = parser.parse_args(argv)
    os.environ.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
    import torch

    from benchmarks.phases import FlopCounter, MatmulRate, PeakMemory, PhaseClock, TimedLM, TimedPredictor, TimedSpace
    from engine.banks.bank import load_bank
    from engine.banks.source import iter_bank_sentences
    from engine.mini import TOKENIZER_PATH
    from engine.mini.models import llama_config
    from engine.mini.tiny import SONAR_BASIC, SONAR_VOCAB, TINY, random_space, widen_tokenizer
    from engine.mini.tokenizer import load_tokenizer
    from engine.models.predictor import PredictorConfig, SonarLLMPredictor
    from engine.models.space import resolve_device, resolve_dtype
    from engine.run.sizing import Shapes, StoryTokens
    from engine.scoring.scorer import DECODING, LEGACY_DECODING
    from engine.spec import parse_spec

    if os.environ.get("EMBOPT_THREADS"):
        torch.set_num_threads(int(os.environ["EMBOPT_THREADS"]))
    device = torch.device("cpu") if args.tiny else resolve_device(args.device)
    quick = args.quick or args.tiny
    steps = args.steps or (2 if quick else 4)
    bank_size = args.bank or (32 if args.tiny else 128 if quick else 2000)
    names = args.predictors or (["900m"] if quick else list(PREDICTORS))
    chosen = [c for c in cases(quick) if not args.cases or c.name in args.cases]
    if args.compare_decode:
        chosen = [c for c in cases(quick) if c.name == "gradient cosine"]
    sizes, width = (TINY, 1024) if args.tiny else (SONAR_BASIC, SONAR_VOCAB)
    if args.tiny:  # gibberish decodes re-encoded overflow the tiny encoder's 64 positions: truncated, as it says
        warnings.filterwarnings("ignore", message="For .* input tensors for SONAR text encoder")

    config = REPO / "experiments.toml"
    spec = parse_spec(config.read_text(encoding="utf-8"), config)
    base = spec.experiments
    story = spec.story_of(base[0])
    work = Path(tempfile.mkdtemp(prefix="real-shape-"))
    tokenizer = load_tokenizer(widen_tokenizer(TOKENIZER_PATH, work / "tokenizer.model", width))
    sentences = list(iter_bank_sentences("corpus", work))[:bank_size]
    (work / "bank.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "shapes": "tiny" if args.tiny else "real",
        "steps": steps,
        "decode_every": args.decode_every,
        "bank": len(sentences),
        "decoding": "legacy" if args.legacy_decode else "spared, story cap",
        "matmul": {},
        "sweep": [],
        "cases": [],
    }
    label = "tiny shapes" if args.tiny else "SONAR basic shapes, vocabulary 256,206"
    print(f"{label}; device {device}, {torch.get_num_threads()} threads; {steps} steps, decode every")
    print(f"{args.decode_every}; bank of {len(sentences)} sentences; story {story.name} of {config.name}")
    for dtype_name in args.dtypes:
        dtype = resolve_dtype(dtype_name)
        matmul = MatmulRate(device, dtype)
        print(f"\n== {dtype_name}: matmul rate {matmul.sample() / 1e9:.0f} GFLOP/s (sampled again before each case)")
        sweep = [] if args.compare_decode else predictor_sweep(names, device, dtype, matmul, args.tiny)
        report["sweep"] += [dict(s, dtype=dtype_name) for s in sweep]
        dtype_entries = []
        memory = PeakMemory(device)
        for shape in [] if args.sweep_only else names:
            memory.reset()
            before = memory.now()
            start = time.perf_counter()
            inner = random_space(tokenizer, sizes, device=device, dtype=dtype)
            torch.manual_seed(0)
            with torch.device(device):
                llama = llama_config(TINY) if args.tiny else PREDICTORS[shape]
                predictor = SonarLLMPredictor(PredictorConfig(dict(llama), inner.dim))
            predictor = predictor.to(dtype=dtype).eval().requires_grad_(False)
            built = time.perf_counter() - start
            weights = memory.now() - before
            print(f"{shape}: models built in {built:.0f}s, {_gb(weights)} GB")
            clock = PhaseClock(device)
            entry: dict[str, Any] = {"dtype": dtype_name, "predictor": shape, "build_seconds": built}
            entry["weights_bytes"] = weights
            if not args.compare_decode:
                entry["mask"] = measure_mask(inner)
            with FlopCounter(clock):
                bank = None
                if any(c.bank for c in chosen):
                    clock.reset()
                    with clock.phase("bank encoding"):
                        bank = load_bank(
                            "bank.txt", work, inner, encoder=f"random-{dtype_name}", dtype=dtype_name, cache_dir=work
                        )
                    entry["bank_encoding"] = clock.snapshot()["bank encoding"]
                    print(f"  bank encoding: {len(bank)} sentences in {entry['bank_encoding']['seconds']:.1f}s")
                    if args.compare_bank:
                        entry["bank_batching"] = compare_bank(inner, sentences, clock)
                shapes = Shapes.of(inner, predictor)
                lm = fluency_model(args.tiny, device, dtype) if any(c.fluency for c in chosen) else None
                if lm is not None:
                    lm.model = TimedLM(lm.model, clock)
                bench = Bench(
                    TimedSpace(inner, clock),
                    TimedPredictor(predictor, clock),
                    clock,
                    memory,
                    story,
                    list(base),
                    bank,
                    matmul,
                    shapes,
                    StoryTokens.of(story, inner, shapes.begin),
                    lm,
                )
                runs: list[tuple[str, Any]] = [("legacy" if args.legacy_decode else "new", DECODING)]
                if args.legacy_decode:
                    runs = [("legacy", LEGACY_DECODING)]
                if args.compare_decode:
                    runs = [("legacy", LEGACY_DECODING), ("new", DECODING)]
                rows = []
                print(table_head())
                for case in chosen:
                    for how, decoding in runs:
                        row = run_case(bench, case, steps, args.decode_every, decoding)
                        row.update(dtype=dtype_name, predictor=shape, decoding=how)
                        if len(runs) > 1:
                            row["case"] = f"{case.name} ({how} decoding)"
                        rows.append(row)
                        print(table_line(row), flush=True)
                entry["cases"] = rows
                if args.compare_decode:
                    old, new = rows[0]["seconds"], rows[1]["seconds"]
                    entry["decode_speedup"] = old / new
                    print(f"  old decoding {old:.0f}s, new {new:.0f}s: {old / new:.2f}x")
            report["cases"].append(entry)
            dtype_entries.append(entry)
            del bench, inner, predictor, bank
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        matmul.sample()
        rate = report["matmul"][dtype_name] = matmul.best
        summary(dtype_name, rate, matmul.samples, sweep, dtype_entries, args.tiny)
    path = args.json or work / "real_shape.json"
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\nJSON: {path}")
    failed = [r for e in report["cases"] for r in e["cases"] if r["failed"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
