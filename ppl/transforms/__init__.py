"""Interpretations of staged generative programs: each file is one transformation."""
