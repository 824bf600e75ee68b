"""Makes the shipped mini cards known to fairseq2, the way sonar-space does its own.

fairseq2 calls every ``fairseq2.extension`` entry point when it first builds
its asset store (pyproject.toml registers :func:`register_fairseq2_extension`),
so ``load_model("embopt_mini_encoder")`` works in any process, with no
environment variable, through the very path that loads the real SONAR cards.
A user's own cards (``FAIRSEQ2_USER_ASSET_DIR``, ``name@user`` overlays) keep
working because nothing here touches that directory.
"""

from __future__ import annotations

from engine.mini import ASSETS_DIR


def register_fairseq2_extension(container: object) -> None:
    from fairseq2.composition import register_file_assets

    register_file_assets(container, ASSETS_DIR, not_exist_ok=True)  # type: ignore[arg-type]
