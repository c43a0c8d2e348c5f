"""Helpers shared by the tests: config composition, synthetic data, test-only callbacks."""
