"""Embedding networks."""
