"""reid: batch-hard triplet metric learning and person re-identification."""
