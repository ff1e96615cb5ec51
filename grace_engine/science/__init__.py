"""The science: what is computed from a student and its teachers' responses. Projections and
per-example gradients, GRACE and every other predictor, their uncertainty (cross-validation,
near-duplicates, learning curves, exact permutation tests), budget-aware rounds, the mixed-teacher
dataset, rankings, influence, a student's evaluation, the distillation scaling law, and the
warnings that qualify results. Functions over arrays, models and dataclasses; no job plumbing.
"""
