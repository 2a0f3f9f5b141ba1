"""Datasets: formats, checks, converters, synthetic generators, dataset layout."""
