"""Evaluation protocols of the papers: label corruptions, metrics and retraining curves."""
