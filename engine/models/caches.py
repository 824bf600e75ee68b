"""Where downloaded model files are kept, and what fixes a missing one: fairseq2's cache and Hugging Face's.

fairseq2 keeps each card file it downloads in its cache (``FAIRSEQ2_CACHE_DIR``, else
``$XDG_CACHE_HOME/fairseq2/assets``, else ``~/.cache/fairseq2/assets``), one folder per URL named by the first 24
hex digits of the URL's SHA-1, as fairseq2 0.8.1 lays it out.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

FAIRSEQ2_FIX = (
    "run once with network access (it downloads into the fairseq2 cache), copy that cache here and point "
    "FAIRSEQ2_CACHE_DIR at it, or give a card whose checkpoint is a local file (FAIRSEQ2_USER_ASSET_DIR)"
)
HF_FIX = "run once with network access, or copy the Hugging Face cache here and point HF_HOME at it"


def fairseq2_cache_dir() -> Path:
    """The folder fairseq2 downloads card files into (fairseq2/assets/dirs.py's rule)."""
    for name, sub in (("FAIRSEQ2_CACHE_DIR", ""), ("XDG_CACHE_HOME", "fairseq2/assets")):
        value = os.environ.get(name)
        if value:
            return Path(value).expanduser() / sub
    return Path("~/.cache/fairseq2/assets").expanduser()


def cached_download(uri: str) -> Path | None:
    """Where fairseq2 keeps the download of ``uri``, when it has it."""
    folder = fairseq2_cache_dir() / hashlib.sha1(uri.encode()).hexdigest()[:24]
    for candidate in (folder, folder.with_suffix(".download")):
        if candidate.exists():
            return candidate
    return None
