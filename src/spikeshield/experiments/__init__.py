"""Experiments: the quick default job and reproductions of the papers."""
