"""The command-line tasks behind `train.py` and `evaluate.py`, and the Hydra callback of sweeps.

Import the modules themselves: this package re-exports nothing, so that Hydra can load the sweep callback
without importing torch and Lightning.
"""
