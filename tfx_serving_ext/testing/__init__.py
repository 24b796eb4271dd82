"""Builders of real models and data for tests, benchmarks and the notebook."""
