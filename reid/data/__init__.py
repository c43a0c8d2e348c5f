"""Datasets and LightningDataModules."""
