"""Comparisons: variants tuned on one budget, re-trained on seeds, reported side by side."""
