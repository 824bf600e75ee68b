"""The embedding space over real fairseq2 cards (tiny random-init models)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.models.space import load_space

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def space(tiny_backend):
    return load_space(tiny_backend)


def test_encode_gives_one_plain_vector_per_sentence(space):
    vectors = space.encode(["I like cheese.", "There was a boy named Tom.", "I like cheese."])
    assert vectors.shape == (3, space.dim)
    assert not vectors.is_inference()  # usable in autograd
    torch.testing.assert_close(vectors[0], vectors[2])
    assert not torch.allclose(vectors[0], vectors[1])


def test_batched_decode_equals_one_by_one(space):
    vectors = space.encode(["I like cheese.", "She loved to play outside with her toys."])
    vectors = vectors + 0.3 * torch.randn(vectors.shape, generator=torch.Generator().manual_seed(0))
    together = space.decode(vectors, max_len=16)
    alone = [space.decode(v[None], max_len=16)[0] for v in vectors]
    assert together == alone
    assert all(isinstance(text, str) for text in together)


def test_token_nll_reaches_the_input_vector(space):
    ids, lens = space.tokenize_targets(["She loved to play outside with her toys.", "I like cheese."])
    assert lens.tolist()[0] > lens.tolist()[1]
    z = space.encode(["I like cheese.", "I like cheese."]).requires_grad_(True)
    nll = space.token_nll(z, ids, lens)
    assert nll.shape == (2,) and torch.isfinite(nll).all()
    nll.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in space.decoder.parameters())


def test_token_nll_of_a_row_ignores_padding(space):
    ids, lens = space.tokenize_targets(["I like cheese.", "She loved to play outside with her toys."])
    z = space.encode(["There was a boy named Tom.", "There was a boy named Tom."])
    both = space.token_nll(z, ids, lens)
    alone_ids, alone_lens = space.tokenize_targets(["I like cheese."])
    alone = space.token_nll(z[:1], alone_ids, alone_lens)
    torch.testing.assert_close(both[0], alone[0], rtol=1e-5, atol=1e-5)


def test_real_card_names_resolve_through_user_overlays(tmp_path):
    """`text_sonar_basic_encoder@user` cards make the real names load local files."""
    overlay = tmp_path / "overlay"
    overlay_names = ["text_sonar_basic_encoder@user", "text_sonar_basic_decoder@user"]
    subprocess.run(
        [sys.executable, "-m", "engine.mini.tiny", str(overlay), "--names", *overlay_names],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    check = (
        "from engine.spec import Backend; from engine.models.space import load_space;"
        "s = load_space(Backend(kind='sonar', encoder='text_sonar_basic_encoder',"
        " decoder='text_sonar_basic_decoder', tokenizer='text_sonar_basic_encoder', device='cpu'));"
        "print(s.dim, len(s.decode(s.encode(['I like cheese.']), max_len=8)))"
    )
    env = {**os.environ, "FAIRSEQ2_USER_ASSET_DIR": str(overlay)}
    out = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["32", "1"]


def test_greedy_decode_matches_a_width_one_beam_search(space):
    vectors = space.encode(["I like cheese.", "There was a boy named Tom.", "Begin of text."])
    vectors = vectors + 0.2 * torch.randn(vectors.shape, generator=torch.Generator().manual_seed(1))
    beam = space.decoder_pipeline.predict(vectors, target_lang="eng_Latn", batch_size=3, beam_size=1, max_seq_len=16)
    assert space.decode(vectors, beam_size=1, max_len=16) == beam
    assert len(space.decode(vectors, beam_size=2, max_len=16)) == 3


def _pipeline_greedy(space, vectors, max_len):
    """sonar's public greedy decode, as engine.models.space did it before engine.models.fast_decoder."""
    from fairseq2.generation.sampling import TopKSampler

    return space.decoder_pipeline.predict(
        vectors, target_lang="eng_Latn", batch_size=len(vectors), max_seq_len=max_len, sampler=TopKSampler(k=1)
    )


def _varied_vectors(space) -> torch.Tensor:
    """Sentences, noisy sentences, blends, random vectors at two norms, and z's partway through a descent."""
    g = torch.Generator().manual_seed(0)
    sentences = [
        "Once upon a time, there was a little girl named Lily.",
        "She loved to play outside with her toys.",
        "One day, she saw a big tree in the sky.",
        "Her mom said, \"No, you can't climb the tree. It's too high.\"",
        "I like cheese.",
        "There was a boy named Tom.",
    ]
    encoded = space.encode(sentences)
    norm = float(encoded.norm(dim=1).mean())

    def noise(n: int) -> torch.Tensor:
        return torch.randn((n, space.dim), generator=g)

    def at_norm(x: torch.Tensor, r: float) -> torch.Tensor:
        return x * (r / x.norm(dim=1, keepdim=True))

    noisy = torch.cat([encoded + s * norm * noise(len(sentences)) / space.dim**0.5 for s in (0.1, 0.3, 0.6)])
    blends = torch.stack([(1 - a) * encoded[0] + a * encoded[1] for a in (0.2, 0.4, 0.5, 0.6, 0.8)])
    # Projected gradient steps from one sentence toward another one's decoder cross-entropy.
    ids, lens = space.tokenize_targets([sentences[1]])
    z, descent = encoded[4:5].clone(), []
    for _ in range(6):
        z.requires_grad_(True)
        (grad,) = torch.autograd.grad(space.token_nll(z, ids, lens).sum(), z)
        z = at_norm(z.detach() - 0.05 * grad / grad.norm(), norm)
        descent.append(z)
    return torch.cat([encoded, noisy, blends, at_norm(noise(8), 0.2), at_norm(noise(4), 3 * norm), *descent])


@pytest.fixture(scope="module")
def mini_space():
    from engine.spec import Backend

    return load_space(Backend(device="cpu"))  # the shipped mini cards


@pytest.mark.parametrize("which", ["tiny", "mini"])
def test_greedy_decode_is_the_pipelines_greedy_decode(which, space, mini_space):
    space = space if which == "tiny" else mini_space
    assert space.greedy is not None  # the lean decoder covers these models, so it is what is compared
    vectors = _varied_vectors(space)
    for max_len in (64, 12, 3):
        assert space.decode(vectors, max_len=max_len) == _pipeline_greedy(space, vectors, max_len)
    assert [space.decode(v[None], max_len=64)[0] for v in vectors[:5]] == _pipeline_greedy(space, vectors[:5], 64)


def test_greedy_decode_fails_where_the_pipeline_fails(space):
    from fairseq2.generation import SequenceGenerationError

    bad = torch.full((2, space.dim), float("nan"))
    with pytest.raises(SequenceGenerationError):
        _pipeline_greedy(space, bad, 16)
    with pytest.raises(SequenceGenerationError):
        space.decode(bad, max_len=16)
