"""The science: what is computed from a student and its teachers' responses. Projections and
per-example gradients, GRACE and every other predictor, their uncertainty (cross-validation,
near-duplicates, learning curves, exact permutation tests), budget-aware rounds, the mixed-teacher
dataset, rankings, influence, a student's evaluation, the distillation scaling law, and the
warnings that qualify results. Functions over arrays, models and dataclasses; no job plumbing.

torch, ``scipy.stats`` and ``scipy.optimize`` are imported inside the functions that compute with
them, never at the top of a module the API reads results through: together they cost 2 to 4 s
at every API process start, and the API computes nothing with them
(``tests/test_imports.py``).
"""
