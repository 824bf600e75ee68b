"""Token swap's vocabulary: the candidate mask, a table wider than its tokenizer, a tokenizer wider than its table."""

from __future__ import annotations

import re

import pytest
import torch

from engine.methods.token_swap import TokenSwapOptions, allowed_tokens
from engine.mini import TOKENIZER_PATH
from engine.mini.tiny import SAMPLE_TEXT, FoldingTokenizer, random_space, widen_tokenizer
from engine.mini.tokenizer import load_tokenizer, train_tokenizer
from engine.models.vocab import VocabularyError, candidate_mask, piece_texts
from engine.run.batches import optimize_batch
from engine.spec import Experiment, Story

STORY = Story("s", SAMPLE_TEXT[:3], optimize=0, targets=(1,))


def decoded_one_by_one(tokenizer) -> list[str]:
    decode = tokenizer.create_decoder()
    return [str(decode(torch.tensor([i]))) for i in range(tokenizer.vocab_info.size)]


def mask_by_decoding(tokenizer) -> torch.Tensor:
    """The definition: an ordinary piece with something to show, decoded id by id."""
    info = tokenizer.vocab_info
    special = {info.pad_idx, info.unk_idx, info.bos_idx, info.eos_idx}
    texts = [t.strip() for t in decoded_one_by_one(tokenizer)]
    return torch.tensor([i not in special and bool(t) and not re.match(r"^__\w+__$", t) for i, t in enumerate(texts)])


@pytest.fixture(scope="module")
def mini_tokenizer():
    return load_tokenizer(TOKENIZER_PATH)


@pytest.fixture(scope="module")
def narrow_tokenizer(tmp_path_factory):
    path = train_tokenizer(list(SAMPLE_TEXT) * 4, tmp_path_factory.mktemp("tok") / "t.model", vocab_size=120)
    return load_tokenizer(path)


def test_the_piece_table_gives_every_ids_text_as_decoding_it_does(mini_tokenizer):
    fast = [t.strip() for t in piece_texts(mini_tokenizer)]
    assert fast == [t.strip() for t in decoded_one_by_one(mini_tokenizer)]
    assert torch.equal(candidate_mask(mini_tokenizer, mini_tokenizer.vocab_info.size), mask_by_decoding(mini_tokenizer))


def test_a_tokenizer_widened_to_sonars_width_keeps_its_tokenisation(mini_tokenizer, tmp_path):
    wide = load_tokenizer(widen_tokenizer(TOKENIZER_PATH, tmp_path / "wide.model"))
    assert wide.vocab_info.size == 256206
    ours, theirs = (t.create_encoder(lang="eng_Latn", mode="source") for t in (wide, mini_tokenizer))
    for text in SAMPLE_TEXT:
        assert ours(text)[1:].tolist() == theirs(text)[1:].tolist()  # all but the language token, moved to the end
    filler = ours("I like cheese.")[1:-1].clone()
    filler[1] = 200_000  # any id: a text holding a filler piece tokenises back to it
    assert ours(wide.create_decoder()(filler))[1:-1].tolist() == filler.tolist()
    mask = candidate_mask(wide, 256206)
    pieces = mini_tokenizer.vocab_info.size - 4  # pad and the pieces keep their ids; the language token and tags move
    assert mask[:pieces].tolist() == mask_by_decoding(mini_tokenizer)[:pieces].tolist()
    assert mask[pieces:-4].all() and not mask[-4:].any()  # fillers are text; the language token and tags are not


def test_ids_past_the_tokenizer_are_never_candidates_and_a_wider_tokenizer_is_refused(narrow_tokenizer):
    size = narrow_tokenizer.vocab_info.size
    mask = candidate_mask(narrow_tokenizer, size + 37)
    assert mask.shape == (size + 37,) and not mask[size:].any()
    assert torch.equal(mask[:size], mask_by_decoding(narrow_tokenizer))
    message = f"the tokenizer has {size} ids but the encoder's embedding table only {size - 1} rows"
    with pytest.raises(VocabularyError, match=message):
        candidate_mask(narrow_tokenizer, size - 1)
    with pytest.raises(VocabularyError, match=message):
        random_space(narrow_tokenizer, table_rows=size - 1)


@pytest.mark.parametrize("objective", ["cosine", "decoder_ce"])
def test_token_swap_runs_on_a_table_wider_than_its_tokenizer(narrow_tokenizer, objective, tiny_dir):
    from engine.models.predictor import load_predictor
    from engine.spec import Objective

    size = narrow_tokenizer.vocab_info.size
    space = random_space(FoldingTokenizer(narrow_tokenizer), table_rows=size + 37)
    assert space.token_table.shape[0] == size + 37 and allowed_tokens(space).shape == (size + 37,)
    experiment = Experiment(
        "wide",
        "I like cheese.",
        method="token_swap",
        steps=3,
        decode_every=1,
        objective=Objective(((objective, 1.0),)),
        options=TokenSwapOptions(search_width=8),
    )
    (row,) = optimize_batch(
        [experiment], STORY, space, load_predictor(tiny_dir / "predictor"), emit=lambda e: None, on_finished=print
    )
    assert row["status"] == "done", row["error"]
    assert row["scored"] > 1 and row["text"]
    encode = narrow_tokenizer.create_encoder(lang="eng_Latn", mode="source")
    assert all(int(encode(entry["text"]).max()) < size for entry in row["top"])
