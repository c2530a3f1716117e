"""Helpers for the data-pipeline tests: render the generated data files, plant corpora."""
