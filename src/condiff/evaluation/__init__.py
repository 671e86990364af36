"""Measuring quality: features, metrics and the reports `condiff eval` prints."""
