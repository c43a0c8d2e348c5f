"""reid: batch-hard triplet metric learning and person re-identification."""

from typing import Any

__all__ = ["load_model"]


def __getattr__(name: str) -> Any:
    """`reid.load_model`, imported on first use (PEP 562): `import reid` stays free of torch, which the
    sweep's parent process and the entry scripts' config checks never import."""
    if name == "load_model":
        from reid.inference.model import load_model

        return load_model
    raise AttributeError(f"module 'reid' has no attribute {name!r}")
