"""Sentence banks: real sentences encoded once and cached on disk, for the methods that search or project onto them.

:mod:`~engine.banks.source` validates and streams a bank without torch (``--check`` uses it);
:mod:`~engine.banks.cache` lays out the on-disk entries; :mod:`~engine.banks.bank` loads a bank
(encoding it once) as a :class:`~engine.banks.bank.SentenceBank`.
"""
