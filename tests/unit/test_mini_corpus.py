"""The mini corpus generator: deterministic, big enough, and holding the reference sentences."""

from __future__ import annotations

import pytest

from engine.mini.corpus import (
    INIT_SENTENCES,
    LILY_STORY,
    REFERENCE_SENTENCES,
    corpus_statistics,
    generate_corpus,
    missing_reference_sentences,
)


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus()


def test_same_seed_same_corpus(corpus) -> None:
    assert generate_corpus() == corpus


def test_other_seed_other_corpus(corpus) -> None:
    assert generate_corpus(seed=7, num_stories=200).train[:20] != corpus.train[:20]


def test_counts(corpus) -> None:
    stats = corpus_statistics(corpus)
    assert stats["stories"] >= 10_000
    assert stats["distinct_sentences"] >= 5_000
    assert stats["heldout_stories"] > 100
    assert all(4 <= len(s.sentences) <= 8 for s in corpus.train + corpus.heldout)


def test_reference_sentences_are_in_training_text(corpus) -> None:
    assert missing_reference_sentences(corpus) == []
    assert set(REFERENCE_SENTENCES) == set(LILY_STORY) | set(INIT_SENTENCES)


def test_lily_story_is_held_out_whole(corpus) -> None:
    assert any(s.sentences == LILY_STORY for s in corpus.heldout)
    assert not any(s.sentences == LILY_STORY for s in corpus.train)


def test_split_is_by_story(corpus) -> None:
    assert not {s.sentences for s in corpus.train} & {s.sentences for s in corpus.heldout}


def test_stories_have_dialogue_and_many_names(corpus) -> None:
    text = " ".join(s for st in corpus.train for s in st.sentences)
    assert text.count('"') > 1000
    for name in ("Lily", "Tom", "Ben", "Sue", "Mia"):
        assert f" {name} " in f" {text} ".replace(".", " ").replace(",", " ")
    assert len({st.shape for st in corpus.train}) >= 5
