"""Figures and summaries made from results: embedding scatters and verification histograms (`figures`),
ranked lists of retrieval as pictures and per-query records (`ranked_lists`) and sweep summaries (`sweeps`).

Import the modules themselves: this package re-exports nothing, so that a sweep's parent process, which
only writes summaries, never imports torch.
"""
