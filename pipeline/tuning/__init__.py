"""Tuning: the Optuna tuner, its workers, samplers, search space, report, best, populations."""
