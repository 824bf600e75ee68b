"""The embedding space: encode text to vectors, decode vectors to text, and
score a vector by the decoder's token cross-entropy of a target sentence.

Everything goes through sonar-space's public pipelines and fairseq2's asset
cards, so the shipped mini models and the real SONAR ones load by one path:
only the card names differ. ``import sonar`` is slow (~6 s), so it happens
inside :func:`load_space`, never at import time.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from engine.text import error_line

if TYPE_CHECKING:
    from engine.spec import Backend

LANG = "eng_Latn"
Progress = Callable[[str, float], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("backend.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


@dataclass
class EmbeddingSpace:
    """A SONAR-style text encoder/decoder pair sharing one tokenizer."""

    encoder_pipeline: Any  # sonar TextToEmbeddingModelPipeline
    decoder_pipeline: Any  # sonar EmbeddingToTextModelPipeline
    tokenizer: Any  # fairseq2 Tokenizer
    device: torch.device
    dtype: torch.dtype

    def __post_init__(self) -> None:
        from engine.models.vocab import check_width

        check_width(self.tokenizer, int(self.token_table.shape[0]))
        self.decoder_pipeline.model.requires_grad_(False)
        self.encoder_pipeline.model.requires_grad_(False)
        self._target_encoder = self.tokenizer.create_encoder(lang=LANG, mode="target")
        self._source_encoder: Any = None
        self._text_decoder: Any = None
        self._pad = self.tokenizer.vocab_info.pad_idx
        self.max_len = int(self.decoder.max_target_seq_len)
        from engine.models.fast_decoder import lean_greedy

        # The pipeline's greedy decode minus fairseq2's per-step plumbing, same strings; None: model not covered.
        self.greedy = lean_greedy(self.decoder, self.decoder_pipeline.tokenizer, target_lang=LANG)

    @property
    def decoder(self) -> Any:
        """The ConditionalTransformerDecoderModel behind the decode pipeline."""
        return self.decoder_pipeline.model.decoder

    @property
    def dim(self) -> int:
        return int(self.decoder.final_proj.input_dim)

    def encode(self, sentences: Sequence[str]) -> Tensor:
        """[N, D] embeddings, cloned out of inference mode so autograd may use them."""
        out = self.encoder_pipeline.predict(list(sentences), source_lang=LANG, batch_size=max(1, len(sentences)))
        return out.clone()

    def decode(self, vectors: Tensor, *, beam_size: int = 1, max_len: int = 64) -> list[str]:
        """Decode a batch of vectors [N, D] in one call.

        Greedy (``beam_size == 1``) is the sonar pipeline's argmax decode, by
        :mod:`engine.models.fast_decoder` when it covers the model (same strings,
        a fraction of the time) and by the pipeline otherwise.
        """
        if vectors.shape[0] == 0:
            return []
        vectors = vectors.detach().to(self.device, self.dtype)
        max_seq_len = min(max_len, self.max_len)
        if beam_size == 1:
            if self.greedy is not None:
                texts = self.greedy(vectors, max_seq_len)
                if texts is not None:
                    return texts
            # Greedy through the sampling generator: the same argmax path as a
            # width-1 beam search without its bookkeeping (~25% faster here).
            from fairseq2.generation.sampling import TopKSampler

            search: dict[str, Any] = {"sampler": TopKSampler(k=1)}
        else:
            search = {"beam_size": beam_size}
        return self.decoder_pipeline.predict(
            vectors,
            target_lang=LANG,
            batch_size=vectors.shape[0],
            max_seq_len=max_seq_len,
            **search,
        )

    def decode_matches(
        self, vectors: Tensor, wanted: Sequence[str], *, beam_size: int = 1, max_len: int = 64
    ) -> list[bool]:
        """Whether each vector [N, D] decodes to its wanted text (up to surrounding spaces), as :meth:`decode` would.

        Greedy decodes by :mod:`engine.models.fast_decoder` stop at the first token that rules a match
        out: a lost decode costs a token or two instead of the whole cap.
        """
        if vectors.shape[0] == 0:
            return []
        if beam_size == 1 and self.greedy is not None:
            vectors = vectors.detach().to(self.device, self.dtype)
            texts = self.greedy(vectors, min(max_len, self.max_len), wanted)
            if texts is not None:
                return [text is not None and text.strip() == want.strip() for text, want in zip(texts, wanted)]
        texts = self.decode(vectors, beam_size=beam_size, max_len=max_len)
        return [text.strip() == want.strip() for text, want in zip(texts, wanted)]

    # --- tokens in, for searches over the encoder's input (engine.methods.token_swap) ---------------------
    def source_ids(self, sentence: str) -> Tensor:
        """The encoder's token ids of a sentence: ``__eng_Latn__ ... </s>`` (the pipeline's own tokenisation)."""
        if self._source_encoder is None:
            self._source_encoder = self.tokenizer.create_encoder(lang=LANG, mode="source")
        return self._source_encoder(sentence).to(self.device)

    def source_lengths(self, sentences: Sequence[str]) -> list[int]:
        """How many tokens the encoder reads for each sentence (what an encoder call pads to its longest)."""
        if self._source_encoder is None:
            self._source_encoder = self.tokenizer.create_encoder(lang=LANG, mode="source")
        return [len(self._source_encoder(s)) for s in sentences]

    def text_of(self, ids: Tensor) -> str:
        """The text of content token ids (no language token, no ``</s>``)."""
        if self._text_decoder is None:
            self._text_decoder = self.tokenizer.create_decoder()
        return str(self._text_decoder(ids.cpu()))

    @property
    def token_table(self) -> Tensor:
        """[V, d] the encoder's token embedding table."""
        return self.encoder_pipeline.model.encoder_frontend.embed.weight

    def encode_soft(self, tokens: Tensor) -> Tensor:
        """[B, D] sentence embeddings of token distributions [B, L, V] (one-hot rows: real tokens).

        The encoder pipeline's computation with the table lookup written as a
        product, so the gradient reaches every token of every position; one-hot
        inputs give what :meth:`encode` gives for those ids. No padding: every
        row has the same length.
        """
        from fairseq2.nn import BatchLayout

        model = self.encoder_pipeline.model
        frontend = model.encoder_frontend
        seqs = tokens.to(self.token_table.dtype) @ self.token_table
        if frontend.scale != 1.0:
            seqs = seqs * frontend.scale
        layout = BatchLayout.of(seqs)
        if frontend.pos_encoder is not None:
            seqs = frontend.pos_encoder(seqs, layout)
        encoded = model.encoder(seqs, layout)
        if model.layer_norm is not None:
            encoded = model.layer_norm(encoded)
        return model.pool(encoded, layout, model.pooling)

    def tokenize_targets(self, sentences: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Padded target ids [N, L] (``</s> __eng_Latn__ ... </s>``) and their lengths [N]."""
        seqs = [self._target_encoder(s) for s in sentences]
        lens = torch.tensor([len(s) for s in seqs])
        ids = torch.full((len(seqs), int(lens.max())), self._pad, dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = seq
        return ids.to(self.device), lens.to(self.device)

    def token_nll(self, vectors: Tensor, ids: Tensor, seq_lens: Tensor) -> Tensor:
        """Mean teacher-forced token cross-entropy per row [N]; differentiable w.r.t. ``vectors``."""
        from fairseq2.nn import BatchLayout

        source = vectors.unsqueeze(1).to(self.dtype)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        input_lens = seq_lens - 1
        logits = self.decoder(
            source,
            BatchLayout.of(source),
            inputs,
            BatchLayout.of(inputs, seq_lens=input_lens.tolist()),
        )
        nll = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), targets, ignore_index=self._pad, reduction="none"
        )
        return nll.sum(dim=1) / input_lens.to(nll.dtype)


class CheckpointError(Exception):
    """A card's checkpoint file that cannot be read: ``str(err)`` is one line naming the file."""


@contextlib.contextmanager
def _naming_checkpoint(card: str) -> Iterator[None]:
    """Re-raise a failure to read ``card``'s checkpoint with the file's name (fairseq2's errors may lack it)."""
    try:
        yield
    except Exception as err:
        if _chain_has(err, "AssetDownloadError"):  # offline, or no network: say what fixes it, not fairseq2's trace
            from engine.models.caches import FAIRSEQ2_FIX, fairseq2_cache_dir

            raise CheckpointError(
                f"card {card}: its files are not in the fairseq2 cache ({fairseq2_cache_dir()}) and cannot be "
                f"downloaded here: {FAIRSEQ2_FIX}; `embopt-tui --check --deep` lists every missing piece"
            ) from None
        cause = _unreadable_checkpoint(err)
        if cause is None:
            raise
        raise CheckpointError(
            f"{_checkpoint_of(card)}: checkpoint of card {card} cannot be read (truncated or corrupt file?): "
            + error_line(cause)
        ) from None


def _chain_has(err: BaseException, name: str) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if type(seen).__name__ == name:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _unreadable_checkpoint(err: BaseException) -> BaseException | None:
    """The innermost error of the chain raised while reading a checkpoint file, or None if it is another failure."""
    from fairseq2.io import CorruptFileError
    from fairseq2.model_checkpoint import CorruptModelCheckpointError

    found = None
    seen: BaseException | None = err
    while seen is not None:
        frames = traceback.extract_tb(seen.__traceback__)
        reading = any(f.filename.endswith(os.path.join("torch", "serialization.py")) for f in frames)
        if isinstance(seen, (CorruptFileError, CorruptModelCheckpointError)) or reading:
            found = seen
        seen = seen.__cause__ or seen.__context__
    return None if isinstance(found, torch.OutOfMemoryError) else found


def _checkpoint_of(card: str) -> str:
    """The card's checkpoint as a path (a URI when it is remote), for messages."""
    try:
        from fairseq2.assets import get_asset_store

        uri = get_asset_store().retrieve_card(card).field("checkpoint").as_uri()
        return str(uri.to_path()) if uri.scheme == "file" else str(uri)
    except Exception:  # the card itself is broken: its name is all there is
        return f"card {card}"


def load_space(
    backend: Backend,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: Progress | None = None,
) -> EmbeddingSpace:
    """Load encoder, decoder and tokenizer by card name (mini or real SONAR)."""
    report = progress or (lambda stage, fraction: None)
    device = device or resolve_device(backend.device)
    dtype = dtype or resolve_dtype(backend.dtype)
    report("importing sonar", 0.05)
    # fairseq2's own rich progress bars would write into the dashboard's terminal.
    os.environ.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
    from fairseq2.data.tokenizers import load_tokenizer
    from sonar.inference_pipelines.text import EmbeddingToTextModelPipeline, TextToEmbeddingModelPipeline

    report(f"tokenizer {backend.tokenizer}", 0.3)
    with _naming_checkpoint(backend.tokenizer):
        tokenizer = load_tokenizer(backend.tokenizer)
    report(f"encoder {backend.encoder}", 0.4)
    with _naming_checkpoint(backend.encoder):
        encoder = TextToEmbeddingModelPipeline(encoder=backend.encoder, tokenizer=tokenizer, device=device, dtype=dtype)
    report(f"decoder {backend.decoder}", 0.7)
    with _naming_checkpoint(backend.decoder):
        decoder = EmbeddingToTextModelPipeline(decoder=backend.decoder, tokenizer=tokenizer, device=device, dtype=dtype)
    report("models loaded", 1.0)
    return EmbeddingSpace(encoder, decoder, tokenizer, device, dtype)
