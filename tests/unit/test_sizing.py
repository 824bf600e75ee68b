"""Batch sizes on a CUDA device: the memory model of a row, the rows that fit, and what the log says."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from embopt_tui.headless import log_line
from engine import events as ev
from engine.methods.token_swap import TokenSwapOptions
from engine.mini.corpus import LILY_STORY
from engine.run.backend import load_models
from engine.run.queue import MAX_BATCH, Queue
from engine.run.sizing import (
    MAX_ROWS,
    RESERVE_BYTES,
    RESERVE_SHARE,
    DeviceLimit,
    Shapes,
    StoryTokens,
    device_limit,
    row_bytes,
    rows_that_fit,
)
from engine.run.steering import Steering
from engine.spec import Backend, Experiment, Objective, Spec, Story

LILY = Story("lily", LILY_STORY, optimize=0, targets=(1,))
COSINE = Experiment("cos", "I like cheese.")
CE = dataclasses.replace(COSINE, name="ce", objective=Objective((("decoder_ce", 1.0),)))
# SONAR basic and a SONAR-LLM-900M-shaped predictor at bfloat16, on the Lily story as the mini tokenizer cuts it.
REAL = Shapes(1024, 256206, 24, 8192, 24, 8192, 1536, 2048, 2048, 6144, 17, 1, 2, 4_660_000_000)
LILY_TOKENS = StoryTokens(positions=2, targets=1, target_tokens=12, source_tokens=24, decode_len=48)


@pytest.fixture(scope="module")
def models():
    return load_models(Backend(device="cpu"))


def test_a_row_costs_its_decodes_and_what_its_method_adds():
    cosine, ce = row_bytes(REAL, LILY_TOKENS, [COSINE]), row_bytes(REAL, LILY_TOKENS, [CE])
    assert 10e6 < cosine < 30e6  # two decodes (z and the prediction) dominate: about 7 MB each
    assert 40e6 < ce - cosine < 80e6  # the decoder's cross-entropy over 12 tokens of a 256,206-wide vocabulary
    longer = dataclasses.replace(LILY_TOKENS, target_tokens=24)
    assert row_bytes(REAL, longer, [CE]) - row_bytes(REAL, longer, [COSINE]) == pytest.approx(2 * (ce - cosine))
    narrow = TokenSwapOptions(search_width=8)
    swap = [dataclasses.replace(COSINE, method="token_swap", options=TokenSwapOptions())]
    assert row_bytes(REAL, LILY_TOKENS, swap) > row_bytes(
        REAL, LILY_TOKENS, [dataclasses.replace(swap[0], options=narrow)]
    )


def test_the_rows_that_fit_keep_a_reserve_and_stay_within_bounds():
    assert rows_that_fit(8_000_000_000, 50_000_000) == 122  # (8 GB x 0.9 - 1 GiB) / 50 MB
    assert rows_that_fit(2_000_000_000, 10_000_000_000) == 1  # one row always runs
    assert rows_that_fit(141_000_000_000, 1_000_000) == MAX_ROWS


def test_the_device_limit_sizes_each_kind_of_batch_once_and_says_why(models):
    per_row = row_bytes(Shapes.of(models.space, models.predictor), StoryTokens.of(LILY, models.space, 1), [CE])

    def free_for(rows: float) -> int:  # the free memory that leaves room for this many rows after the reserve
        return int((RESERVE_BYTES + rows * per_row) / (1 - RESERVE_SHARE))

    events: list[ev.Event] = []
    free = [free_for(100.5)]
    limit = DeviceLimit(models, lambda e: LILY, lambda bank: False, events.append, free_memory=lambda: free[0])
    assert limit([CE, dataclasses.replace(CE, name="ce2")]) == 100
    (said,) = events
    assert isinstance(said, ev.BatchLimit) and said.rows == 100
    gb, mb = free[0] / 1e9, per_row / 1e6
    assert said.reason == (
        f"batches of gradient (decoder_ce) on story lily: up to 100 rows, {gb:.1f} GB free on the device"
        f" and about {mb:.3g} MB a row"
    )
    assert log_line(said) == (said.reason, None)  # the headless log's line
    assert limit([CE]) == 100 and len(events) == 1  # the same kind, the same answer: said once
    free[0] = free_for(40.5)
    assert limit([CE]) == 40 and events[-1].rows == 40  # the answer changed: said again
    nearest = dataclasses.replace(CE, bank="corpus", options=dataclasses.replace(CE.options, nearest=True))
    assert limit([nearest]) < 40  # a bank not loaded yet may take half of what is free


def test_off_cuda_batches_keep_the_fixed_limit(models):
    assert models.space.device.type == "cpu"
    assert device_limit(models, story_of=lambda e: LILY, loaded_banks=lambda b: True, emit=print) is None
    experiments = tuple(dataclasses.replace(COSINE, name=f"e{n}") for n in range(MAX_BATCH + 3))
    spec = Spec(Path("experiments.toml"), Backend(), {"lily": LILY}, experiments)
    queue = Queue(spec, lambda e: None, Steering())
    assert len(queue.next_batch()) == MAX_BATCH
    assert [e.name for e in queue.next_batch(lambda same: 5)] == ["e0", "e1", "e2", "e3", "e4"]
