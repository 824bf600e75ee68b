"""The terms an objective is a weighted sum of, by name (plain Python: the config parser reads it)."""

TERMS = ("cosine", "mse", "decoder_ce", "cycle", "fluency", "repetition")
SOLO_TERMS = TERMS[:3]  # the others need a target term beside it: alone they have nothing to aim at
# Terms of the candidate's text, not of z: the fluency model's mean NLL per token and a repetition penalty.
# Only methods that score texts can use them (not the gradient method: another model's tokens have no gradient to z).
TEXT_TERMS = ("fluency", "repetition")
