"""Data: the EMR contract, normalization, import, synthetic data and graph building."""
