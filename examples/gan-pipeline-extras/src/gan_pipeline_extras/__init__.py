"""Example gan-pipeline plugins: ``r1`` (constraint) and ``bce_smooth`` (loss)."""

__version__ = "0.1.0"
