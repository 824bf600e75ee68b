"""Sentence banks on the real embedded default: sources, encoding, the on-disk cache, nearest rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.banks import bank as bank_module
from engine.banks import cache as bank_cache
from engine.banks import source as bank_source
from engine.banks.bank import encoder_fingerprint, load_bank
from engine.banks.source import BANK_CORPUS, BankError, bank_source_problem, iter_bank_sentences, resolve_bank_path
from engine.mini import corpus as mini_corpus
from engine.run.backend import load_models
from engine.spec import Backend

ENCODER, DTYPE = "embopt_mini_encoder", "float32"
SENTENCES = [
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside with her toys.",
    "I like cheese.",
    "There was a boy named Tom.",
    "One day, she saw a big tree in the sky.",
    "Lily was sad because she wanted to climb the tree.",
    "Her mom said, \"No, you can't climb the tree. It's too high.\"",
]


class CountingSpace:
    """The real space, with a count of encoder calls (and of the sentences they carried)."""

    def __init__(self, space):
        self.space = space
        self.calls = 0
        self.sentences = 0

    def encode(self, sentences):
        self.calls += 1
        self.sentences += len(sentences)
        return self.space.encode(sentences)

    def __getattr__(self, name):
        return getattr(self.space, name)


@pytest.fixture(scope="module")
def real_space():
    return load_models(Backend(device="cpu")).space


@pytest.fixture
def space(real_space):
    return CountingSpace(real_space)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("EMBOPT_CACHE_DIR", str(root))
    return root / "banks"


@pytest.fixture
def bank_file(tmp_path) -> Path:
    path = tmp_path / "bank.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


def load(path: Path, space, **kw):
    return load_bank(str(path), path.parent, space, encoder=ENCODER, dtype=DTYPE, **kw)


def entry(cache_dir: Path) -> Path:
    (folder,) = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    return folder


# --- sources ---------------------------------------------------------------------------------------------------


def test_a_file_bank_is_stripped_lines_without_blanks_or_repeats(tmp_path):
    path = tmp_path / "b.txt"
    text = "\ufeff  I like cheese. \n\n\tThere was a boy named Tom.\r\n I like cheese.\n \n\u00a0\nA\u2028B\nlast"
    path.write_bytes(text.encode())
    assert list(iter_bank_sentences("b.txt", tmp_path)) == [
        "I like cheese.",
        "There was a boy named Tom.",
        "A\u2028B",
        "last",
    ]


def test_the_corpus_bank_is_what_the_embedded_default_was_trained_on():
    training = json.loads((Path(mini_corpus.__file__).parent / "assets" / "training.json").read_text())
    assert training["seed"] == mini_corpus.DEFAULT_SEED
    assert training["schedule"]["stories"] == mini_corpus.DEFAULT_NUM_STORIES
    expected = mini_corpus.generate_corpus(training["seed"], training["schedule"]["stories"]).train_sentences()
    assert list(iter_bank_sentences(BANK_CORPUS, "/nowhere")) == expected
    assert set(mini_corpus.LILY_STORY) <= set(expected)


def test_paths_are_relative_to_the_config_folder_and_expand_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_bank_path("data/b.txt", tmp_path / "cfg") == tmp_path / "cfg" / "data" / "b.txt"
    assert resolve_bank_path("~/b.txt", tmp_path / "cfg") == tmp_path / "home" / "b.txt"
    assert resolve_bank_path("/abs/b.txt", tmp_path / "cfg") == Path("/abs/b.txt")


def test_validation_names_what_is_wrong_with_the_bank(tmp_path):
    (tmp_path / "blank.txt").write_text("\n  \n\t\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "folder").mkdir()
    (tmp_path / "latin1.txt").write_bytes(b"fine\nalso fine\ncaf\xe9\n")
    (tmp_path / "ok.txt").write_text("\n\nI like cheese.\n")
    problem = lambda value: bank_source_problem(value, tmp_path)  # noqa: E731
    assert problem(BANK_CORPUS) is None
    assert problem("ok.txt") is None
    assert problem("missing.txt") == f"bank file {tmp_path / 'missing.txt'} does not exist"
    assert problem("folder") == f"bank file {tmp_path / 'folder'} is a directory, not a file"
    assert problem("blank.txt") == f"bank file {tmp_path / 'blank.txt'} has no sentences (every line is blank)"
    assert problem("empty.txt") == f"bank file {tmp_path / 'empty.txt'} has no sentences (every line is blank)"
    assert problem("latin1.txt") == f"{tmp_path / 'latin1.txt'}:3: not UTF-8 (byte 0xe9 at column 4)"
    assert "corpus" in problem(" ")


def test_validation_of_a_huge_file_reads_a_prefix_and_load_names_the_bad_line(tmp_path, monkeypatch, space):
    monkeypatch.setattr(bank_source, "CHECK_BYTES", 64)
    lines = [f"Sentence number {i}." for i in range(20)]
    (tmp_path / "big.txt").write_bytes(("\n".join(lines) + "\n").encode() + b"bad \xff line\n")
    assert bank_source_problem("big.txt", tmp_path) is None
    with pytest.raises(BankError, match=rf"^{tmp_path / 'big.txt'}:21: not UTF-8 \(byte 0xff at column 5\)$"):
        load_bank("big.txt", tmp_path, space, encoder=ENCODER, dtype=DTYPE)
    assert space.calls == 0


def test_loading_a_bad_bank_raises_the_validation_message(tmp_path, space):
    (tmp_path / "blank.txt").write_text("\n\n")
    for value in ("missing.txt", "blank.txt"):
        with pytest.raises(BankError) as err:
            load_bank(value, tmp_path, space, encoder=ENCODER, dtype=DTYPE)
        assert str(err.value) == bank_source_problem(value, tmp_path)


# --- encoding and the cache ------------------------------------------------------------------------------------


def test_a_file_bank_is_encoded_in_chunks_with_progress(bank_file, space, real_space):
    seen = []
    bank = load(bank_file, space, chunk=3, progress=lambda done, total: seen.append((done, total)))
    n = len(SENTENCES)
    assert len(bank) == n and bank.texts(range(n)) == SENTENCES and bank.text(-1) == SENTENCES[-1]
    assert space.calls == 3 and space.sentences == n  # 3 + 3 + 1
    assert seen == [(0, n), (3, n), (6, n), (7, n)]
    assert bank.embeddings.dtype == torch.float32 and bank.embeddings.shape == (n, real_space.dim)
    torch.testing.assert_close(bank.embeddings, real_space.encode(SENTENCES), rtol=0, atol=1e-6)
    assert not bank.cached and bank.source == str(bank_file.resolve()) and len(bank.digest) == 64
    with pytest.raises(IndexError):
        bank.text(n)


def test_the_second_load_reads_the_cache_without_the_encoder(bank_file, space, real_space, cache_dir):
    first = load(bank_file, space, chunk=2)
    again = CountingSpace(real_space)
    second = load(bank_file, again, chunk=2, progress=lambda done, total: pytest.fail("progress on a cache hit"))
    assert again.calls == 0 and second.cached
    assert torch.equal(first.embeddings, second.embeddings)
    assert second.texts(range(len(second))) == SENTENCES and second.digest == first.digest
    assert entry(cache_dir) == second.folder and second.folder.parent == cache_dir


def test_the_corpus_bank_is_encoded_once_then_read_back(space, real_space):
    bank = load_bank(BANK_CORPUS, "/anywhere", space, encoder=ENCODER, dtype=DTYPE)
    assert len(bank) == len(bank_source.corpus_sentences()) and bank.source == BANK_CORPUS
    assert space.sentences == len(bank)
    lily = bank.texts(range(len(bank))).index(mini_corpus.LILY_STORY[0])
    torch.testing.assert_close(bank.rows([lily]), real_space.encode([mini_corpus.LILY_STORY[0]]), rtol=0, atol=1e-6)
    again = CountingSpace(real_space)
    second = load_bank(BANK_CORPUS, "/elsewhere", again, encoder=ENCODER, dtype=DTYPE)
    assert torch.equal(second.embeddings, bank.embeddings)
    assert again.calls == 0


def _truncate(folder: Path, name: str) -> None:
    path = folder / name
    path.write_bytes(path.read_bytes()[:-17])


def _flip_a_byte(folder: Path) -> None:
    path = folder / bank_cache.EMBEDDINGS
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40
    path.write_bytes(bytes(data))


def _edit_manifest(folder: Path, **changes) -> None:
    path = folder / bank_cache.MANIFEST
    path.write_text(json.dumps({**bank_cache.read_manifest(folder), **changes}))


def _wrong_header(folder: Path) -> None:
    """Same bytes of data, other shape: only the header (and so the checksum) differs."""
    path = folder / bank_cache.EMBEDDINGS
    data = np.load(path)
    np.save(path, data.reshape(data.shape[1], data.shape[0]))
    files = bank_cache.read_manifest(folder)["files"]
    _edit_manifest(folder, files={**files, bank_cache.EMBEDDINGS: bank_cache.file_record(path)})


def _key(folder: Path) -> dict[str, str]:
    manifest = bank_cache.read_manifest(folder)
    return {name: manifest[name] for name in ("digest", "encoder", "dtype", "fingerprint")}


CORRUPTIONS = {
    "truncated embeddings": lambda f: _truncate(f, bank_cache.EMBEDDINGS),
    "truncated texts": lambda f: _truncate(f, bank_cache.TEXTS),
    "flipped byte": _flip_a_byte,
    "wrong header": _wrong_header,
    "manifest says another count": lambda f: _edit_manifest(f, count=bank_cache.read_manifest(f)["count"] + 1),
    "manifest of another encoder": lambda f: _edit_manifest(f, encoder="other"),
    "no manifest": lambda f: (f / bank_cache.MANIFEST).unlink(),
    "garbage manifest": lambda f: (f / bank_cache.MANIFEST).write_bytes(b"{\x00"),
    "missing offsets": lambda f: (f / bank_cache.OFFSETS).unlink(),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_cache_entry_is_rebuilt_not_trusted(corrupt, bank_file, space, real_space, cache_dir):
    first = load(bank_file, space)
    folder = entry(cache_dir)
    expected = first.embeddings.clone()
    key = _key(folder)
    assert bank_cache.entry_problem(folder, key) is None
    del first
    corrupt(folder)
    assert bank_cache.entry_problem(folder, key) is not None
    again = CountingSpace(real_space)
    rebuilt = load(bank_file, again)
    assert again.calls == 1 and not rebuilt.cached
    assert rebuilt.folder == folder and torch.equal(rebuilt.embeddings, expected)
    assert rebuilt.texts(range(len(rebuilt))) == SENTENCES
    third = CountingSpace(real_space)
    assert load(bank_file, third).cached and third.calls == 0


def test_the_cache_key_holds_content_encoder_dtype_and_weights(bank_file, space, real_space, cache_dir):
    load(bank_file, space)
    load_bank(str(bank_file), bank_file.parent, space, encoder="another_encoder", dtype=DTYPE)
    load_bank(str(bank_file), bank_file.parent, space, encoder=ENCODER, dtype="bfloat16")
    bank_file.write_text(bank_file.read_text() + "One more sentence.\n")
    assert len(load(bank_file, space)) == len(SENTENCES) + 1
    before = encoder_fingerprint(real_space)
    weight = next(real_space.encoder_pipeline.model.parameters())
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.view(-1)[0] += 1.0
        assert encoder_fingerprint(real_space) != before
        load(bank_file, space)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert encoder_fingerprint(real_space) == before
    assert space.calls == 5 and len(list(cache_dir.iterdir())) == 5
    names = sorted(p.name for p in cache_dir.iterdir())
    assert sum(n.startswith("another_encoder-float32-") for n in names) == 1
    assert sum(n.startswith(f"{ENCODER}-bfloat16-") for n in names) == 1


def test_the_cache_lives_where_the_platform_says(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBOPT_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert bank_cache.banks_dir() == tmp_path / "mine" / "banks"
    monkeypatch.delenv("EMBOPT_CACHE_DIR")
    assert bank_cache.banks_dir() == tmp_path / "xdg" / "embopt-tui" / "banks"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: a relative value is invalid
    assert bank_cache.banks_dir() == tmp_path / "home" / ".cache" / "embopt-tui" / "banks"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert bank_cache.banks_dir() == tmp_path / "home" / ".cache" / "embopt-tui" / "banks"


def test_the_environment_variable_moves_the_cache(bank_file, space, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBOPT_CACHE_DIR", str(tmp_path / "moved"))
    bank = load(bank_file, space)
    assert bank.folder.parent == tmp_path / "moved" / "banks"
    assert not (tmp_path / "cache").exists()
    explicit = load(bank_file, space, cache_dir=tmp_path / "explicit")
    assert explicit.folder.parent == tmp_path / "explicit" and space.calls == 2


def test_an_abandoned_build_leaves_nothing_behind(bank_file, space, real_space, cache_dir):
    def stop(done, total):
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load(bank_file, space, chunk=2, progress=stop)
    assert list(cache_dir.iterdir()) == []
    again = CountingSpace(real_space)
    assert not load(bank_file, again).cached and again.calls == 1


def test_builders_of_one_bank_never_share_files_and_the_first_valid_entry_stays(bank_file, space, cache_dir, tmp_path):
    final = load(bank_file, space).folder
    key = _key(final)
    one, two = bank_cache.temp_folder(final), bank_cache.temp_folder(final)
    assert one != two and one.parent == two.parent == final.parent
    for tmp in (one, two):
        for name in (*bank_cache.FILES, bank_cache.MANIFEST):
            (tmp / name).write_bytes((final / name).read_bytes())
    inode = final.stat().st_ino
    bank_cache.publish(one, final, key)  # a valid entry is already there: keep it
    assert final.stat().st_ino == inode and not one.exists()
    _flip_a_byte(final)
    bank_cache.publish(two, final, key)  # an invalid one: replaced
    assert not two.exists() and bank_cache.entry_problem(final, key) is None
    assert sorted(p.name for p in cache_dir.iterdir()) == [final.name]


def test_temporary_folders_of_dead_processes_are_swept(bank_file, space, cache_dir):
    import socket

    bank = load(bank_file, space)
    host = socket.gethostname()
    dead = cache_dir / f".{bank.folder.name}.{host}.999999999.abcd1234.tmp"
    other_host = cache_dir / f".{bank.folder.name}.elsewhere.1.abcd1234.tmp"
    mine = cache_dir / f".{bank.folder.name}.{host}.{os.getpid()}.abcd1234.tmp"
    for path in (dead, other_host, mine):
        path.mkdir()
    bank_cache.temp_folder(bank.folder).rmdir()
    assert not dead.exists() and other_host.exists() and mine.exists()


# --- scoring ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_bank(real_space, tmp_path_factory):
    folder = tmp_path_factory.mktemp("banks")
    return load_bank(BANK_CORPUS, ".", real_space, encoder=ENCODER, dtype=DTYPE, cache_dir=folder)


def test_chunks_cover_every_row_exactly_once(corpus_bank):
    n = len(corpus_bank)
    for rows in (1000, 7, n, n + 5):
        starts, parts = zip(*corpus_bank.chunks(rows))
        assert list(starts) == list(range(0, n, rows))
        assert all(p.shape[0] == min(rows, n - s) for s, p in zip(starts, parts))
        assert torch.equal(torch.cat(parts), corpus_bank.embeddings)
    with pytest.raises(ValueError):
        next(corpus_bank.chunks(0))


@pytest.mark.parametrize("chunk_elements", [bank_module.CHUNK_ELEMENTS, 4000], ids=["one chunk", "many chunks"])
def test_nearest_agrees_with_a_brute_force_cosine_argmax(corpus_bank, real_space, monkeypatch, chunk_elements):
    monkeypatch.setattr(bank_module, "CHUNK_ELEMENTS", chunk_elements)
    gen = torch.Generator().manual_seed(0)
    planted = real_space.encode(["I like cheese.", "There was a boy named Tom."])
    noisy = planted + 0.05 * torch.randn(planted.shape, generator=gen)
    z = torch.cat([planted, noisy, torch.randn(3, corpus_bank.dim, generator=gen)])
    brute = torch.nn.functional.cosine_similarity(z[:, None, :], corpus_bank.embeddings[None, :, :], dim=2)
    for k in (1, 5):
        idx, cos = corpus_bank.nearest(z, k=k)
        want_cos, want_idx = brute.topk(k, dim=1)
        assert idx.shape == cos.shape == (z.shape[0], k)
        assert torch.equal(idx, want_idx)
        torch.testing.assert_close(cos, want_cos, rtol=0, atol=1e-5)
    assert corpus_bank.texts(corpus_bank.nearest(planted)[0]) == ["I like cheese.", "There was a boy named Tom."]
    assert corpus_bank.nearest(z[:1], k=10**9)[0].shape == (1, len(corpus_bank))
