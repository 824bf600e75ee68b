"""Scoring: the story around z embedded once (:mod:`~engine.scoring.problem`) and the loss terms
(:mod:`~engine.scoring.objectives`). Every candidate any method finds is scored here, so a number
means the same whatever found it.
"""
