"""One training run: the trainer, the run around it, its log, checkpoints and resume."""
