"""The terms an objective is a weighted sum of, by name (plain Python: the config parser reads it)."""

TERMS = ("cosine", "mse", "decoder_ce", "cycle")
SOLO_TERMS = TERMS[:3]  # cycle needs a target term beside it: alone it has nothing to aim at
