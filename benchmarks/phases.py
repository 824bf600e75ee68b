"""Where a method's time goes: wall time and FLOPs per phase, and the peak memory, around the engine's own code.

:class:`PhaseClock` charges wall time to the innermost open phase (each second to one
phase), synchronising CUDA at every switch. :func:`timed_models` wraps a space and a
predictor so that every encoder, decoder and predictor call the engine makes opens its
phase; a backward pass is timed by marks on the inputs and outputs of those calls (the
gradient reaching an output opens ``<phase> backward``, reaching the input closes it).
:class:`FlopCounter` counts the matrix products of each phase (torch's own formulas) as
they run. :class:`PeakMemory` is the peak RSS of the process on CPU (the kernel's
high-water mark, reset per measurement) or ``max_memory_allocated`` on CUDA.

Benchmarks only: the engine runs exactly as it does without them.
"""

from __future__ import annotations

import ctypes
import gc
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

OTHER = "other"  # time outside every phase: the methods' own Python, ranking, tokenising, host transfers
ENCODE, ENCODE_SOFT, PREDICT, SCORE, DECODER_CE, DECODE = (
    "encode",
    "encode (soft)",
    "predict",
    "score",
    "decoder CE",
    "decode",
)
BACKWARD = " backward"
BANK_ENCODING = "bank encoding"
FLUENCY = "fluency"  # the fluency model's forward passes (scoring texts, proposing and sampling words)


class PhaseClock:
    """Exclusive wall seconds and FLOPs per phase."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[str] = []
        self._last = time.perf_counter()

    @property
    def current(self) -> str:
        return self._stack[-1] if self._stack else OTHER

    def _switch(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[self.current] += now - self._last
        self._last = now

    def enter(self, name: str) -> None:
        self._switch()
        self._stack.append(name)
        self.calls[name] += 1

    def leave(self) -> None:
        self._switch()
        self._stack.pop()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.enter(name)
        try:
            yield
        finally:
            self.leave()

    def reset(self) -> None:
        if self._stack:
            raise RuntimeError(f"phases still open: {self._stack}")
        self._switch()
        self.seconds.clear()
        self.flops.clear()
        self.calls.clear()

    def add_flops(self, n: int) -> None:
        self.flops[self.current] += n

    def snapshot(self) -> dict[str, dict[str, float]]:
        self._switch()
        names = sorted(set(self.seconds) | set(self.flops))
        return {n: {"seconds": self.seconds[n], "flops": self.flops[n], "calls": self.calls[n]} for n in names}


class _Edge(torch.autograd.Function):
    """Identity whose backward opens (``enter``: a phase's output) or closes (None: its input) a backward phase."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, clock: PhaseClock, enter: str | None) -> Tensor:
        ctx.clock, ctx.enter = clock, enter
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        if ctx.enter is None:
            ctx.clock.leave()
        else:
            ctx.clock.enter(ctx.enter)
        return grad, None, None


def _timed(clock: PhaseClock, name: str, fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn(x)`` in phase ``name``; when a gradient will flow, its backward is phase ``name backward``."""
    tracked = torch.is_grad_enabled() and x.requires_grad
    with clock.phase(name):
        y = fn(_Edge.apply(x, clock, None) if tracked else x)
        return _Edge.apply(y, clock, name + BACKWARD) if tracked and y.requires_grad else y


class TimedSpace:
    """An embedding space whose encoder and decoder calls open their phases (everything else is the space's)."""

    def __init__(self, space: Any, clock: PhaseClock):
        self._space, self._clock = space, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._space, name)

    @property
    def inner(self) -> Any:
        return self._space

    def encode(self, sentences: Sequence[str]) -> Tensor:
        with self._clock.phase(ENCODE):
            return self._space.encode(sentences)

    def encode_soft(self, tokens: Tensor) -> Tensor:
        return _timed(self._clock, ENCODE_SOFT, self._space.encode_soft, tokens)

    def decode(self, vectors: Tensor, **kwargs: Any) -> list[str]:
        with self._clock.phase(DECODE):
            return self._space.decode(vectors, **kwargs)

    def decode_matches(self, vectors: Tensor, wanted: Sequence[str], **kwargs: Any) -> list[bool]:
        with self._clock.phase(DECODE):
            return self._space.decode_matches(vectors, wanted, **kwargs)

    def token_nll(self, vectors: Tensor, ids: Tensor, seq_lens: Tensor) -> Tensor:
        return _timed(self._clock, DECODER_CE, lambda v: self._space.token_nll(v, ids, seq_lens), vectors)


class TimedPredictor(torch.nn.Module):
    """A predictor running the engine's lean forward, in phase ``predict`` (gradients wanted) or ``score``."""

    def __init__(self, predictor: Any, clock: PhaseClock):
        from engine.scoring.problem import fast_forward

        super().__init__()
        self.inner = predictor
        self.config = predictor.config
        self._forward = fast_forward(predictor)
        self._clock = clock

    def forward(self, x: Tensor) -> Tensor:
        wanted = torch.is_grad_enabled() and x.requires_grad
        return _timed(self._clock, PREDICT if wanted else SCORE, self._forward, x)


class TimedLM:
    """A fluency model's causal LM whose every call opens phase ``fluency`` (everything else is the model's)."""

    def __init__(self, model: Any, clock: PhaseClock):
        self._model, self._clock = model, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._clock.phase(FLUENCY):
            return self._model(*args, **kwargs)


class FlopCounter(TorchDispatchMode):
    """Counts the FLOPs of matrix products and attention as they run, charged to the clock's current phase."""

    def __init__(self, clock: PhaseClock):
        from torch.utils.flop_counter import flop_registry, sdpa_flop_count

        super().__init__()
        self.clock = clock
        self.formulas = dict(flop_registry)
        aten = torch.ops.aten

        def attention(query: Any, key: Any, value: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
            return sdpa_flop_count(query.shape, key.shape, value.shape)

        def linear(x: Any, weight: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
            return 2 * x.numel() * weight.shape[0]

        # In inference mode composite ops reach this mode whole (no autograd layer decomposes them first).
        self.formulas[aten._scaled_dot_product_flash_attention_for_cpu] = attention
        self.formulas[aten.scaled_dot_product_attention] = attention
        self.formulas[aten.linear] = linear

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.formulas.get(func._overloadpacket)
        if formula is not None:
            self.clock.add_flops(int(formula(*args, **kwargs, out_val=out)))
        return out


class PeakMemory:
    """The peak memory since :meth:`reset`: RSS on CPU (VmHWM, reset through /proc/self/clear_refs), else CUDA's.

    On CPU a reset first hands the C allocator's free memory back to the system (``malloc_trim``), so the RSS
    it starts from is what is in use, not what earlier work freed and the allocator kept.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            gc.collect()
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")

    def peak(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        return _status_kb("VmHWM") * 1024

    def now(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        return _status_kb("VmRSS") * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class MatmulRate:
    """This machine's rate for a large square matrix product in one dtype (FLOP/s): the best of every sample.

    Sampled between the measurements of a run: on a machine shared with other work a single sample
    can land in a busy second, and a share of an underestimated rate would read too high.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        n = 4096 if device.type == "cuda" else 2048
        self._a, self._b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        self._a @ self._b  # first-call set-up, timed by nothing
        self.samples: list[float] = []

    @property
    def best(self) -> float:
        return max(self.samples)

    def sample(self, seconds: float = 0.5) -> float:
        n = self._a.shape[0]
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self._a @ self._b
            runs += 1
            if cuda:
                torch.cuda.synchronize(self.device)
        self.samples.append(2 * n**3 * runs / (time.perf_counter() - start))
        return self.samples[-1]
