"""Files of network weights: read them safely, and load them into a network that must fit them exactly."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from reid.errors import ConfigError

TORCH_SUFFIXES = (".pth", ".pt")


def state_dict_differences(state: dict[str, Tensor], expected: dict[str, Tensor]) -> list[str]:
    """What keeps `state` from loading where `expected` (a module's state dict) is: keys missing from it,
    keys it has in excess, and tensors of another shape; [] when it fits."""
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    return problems


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a weights file by name: a `.pth`/`.pt` file read with `torch.load(weights_only=True)`
    (a state dict, or a dict holding one under "state_dict" or "model", as training scripts save them) or
    a `.safetensors` file. Raises `ConfigError` naming `model.weights` when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"model.weights='{path}' does not exist. Pass the path of a .pth, .pt or .safetensors file of "
            "ImageNet weights (docs/models.md says where to get them)."
        )
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError(
                f"model.weights='{path}' is a .safetensors file, which needs the safetensors package: "
                'pip install -e ".[timm]" (or pip install safetensors).'
            ) from None
        read = load_file
    elif path.suffix in TORCH_SUFFIXES:

        def read(file: Path) -> object:
            return torch.load(file, map_location="cpu", weights_only=True)
    else:
        raise ConfigError(
            f"model.weights='{path}' is neither a PyTorch file (.pth, .pt) nor a .safetensors file: pass "
            "torchvision's or timm's file of the network's ImageNet weights."
        )
    try:
        state = read(path)
    except Exception as error:  # noqa: BLE001 - every unreadable file gets a message naming it
        text = " ".join(str(error).split())
        raise ConfigError(
            f"model.weights='{path}' could not be read as weights ({text[:300]}). Pass an unmodified "
            "torchvision or timm file; a file that holds Python objects beyond tensors is refused, as "
            "unpickling it could run code."
        ) from None
    if isinstance(state, dict):
        state = next(
            (state[key] for key in ("state_dict", "model") if isinstance(state.get(key), dict)), state
        )
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"model.weights='{path}' holds no state dict (tensors by name).")
    return state


def load_weights(network: nn.Module, path: str | Path, ignored: Iterable[str], description: str) -> None:
    """Load the weights file at `path` into `network`, leaving out the file's tensors under the module
    names `ignored` (a classifier the network has no more).

    Every other tensor must fit: a file of another network stops with a `ConfigError` that counts the
    differences and shows a few. Batch norm counters (`num_batches_tracked`) that older files lack are
    not required. `description` names the network in that message ("torchvision's resnet50").
    """
    prefixes = tuple(f"{name}." for name in ignored)
    state = {k: v for k, v in read_weights(path).items() if not k.startswith(prefixes)}
    expected = {
        k: v for k, v in network.state_dict().items() if k in state or not k.endswith(".num_batches_tracked")
    }
    problems = state_dict_differences(state, expected)
    if problems:
        raise ConfigError(
            f"model.weights='{path}' does not fit {description} ({len(problems)} differences, e.g. "
            f"{'; '.join(problems[:3])}). Pass the weights file of this very network, or set model.name "
            "(and model.source) to the network the file is for."
        )
    network.load_state_dict(state, strict=False)
