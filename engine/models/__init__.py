"""The models: the SONAR-style embedding space (encode, decode, decoder cross-entropy) and the SONAR-LLM predictor.

Real SONAR cards and the shipped mini ones load through one fairseq2 card path (:mod:`engine.models.space`);
predictors load from a SONAR-LLM directory or a Hugging Face hub id (:mod:`engine.models.predictor`,
:mod:`engine.models.hub`). ``predictor_dir`` checks the directory layout without torch, for ``--check``.
"""
