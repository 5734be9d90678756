"""Optuna storages: URLs and checks, the workers of a study, trials whose worker died."""
