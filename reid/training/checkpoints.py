"""Self-describing checkpoints: what rebuilds and feeds the backbone travels inside every `.ckpt`.

Training adds a model card under `MODEL_CARD` to each checkpoint (`ModelCard`):

    {"version": 1,
     "model": {"_target_": "reid.models.convnet.ConvNet", "embed_dim": 2, ...},   # the backbone's config
     "embed_dim": 2, "channels": 1, "input_size": [28, 28],                      # (H, W) of its input
     "pixel_scale": 255,                                 # the backbone's input: uint8 pixels / pixel_scale
     "mean": [0.0], "std": [1.0],                        # the normalisation it applies inside itself
     "train_config": {...}}                              # the whole resolved training config, for reference

so a checkpoint copied alone into an empty folder can be evaluated. The model's input is pixels /
pixel_scale; `mean` and `std` are the normalisation the backbone applies inside itself, `(input - mean) /
std` per channel (the ImageNet networks of `reid.models.trinet` by their weights' mean and std; ConvNet
and LuNet by 0 and 1), so embedding, export and evaluation feed every backbone pixels / pixel_scale and
never normalise twice.

Checkpoints are read with `torch.load(weights_only=True)`: a file from someone else can hold tensors and
plain values only, never code, and the card names its backbone from `reid.models` only (`build_backbone`).
They are written with `AtomicCheckpointIO`: a kill or a full disk never leaves a partial `.ckpt` under its
final name.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.io import TorchCheckpointIO
from torch import nn

from reid.errors import ConfigError
from reid.files import atomic_file
from reid.models import ConvNet, EmbeddingNet, LuNet
from reid.models.weights import state_dict_differences

MODEL_CARD = "reid_model_card"
CARD_VERSION = 1
BACKBONES: dict[str, type[nn.Module]] = {
    f"{cls.__module__}.{cls.__name__}": cls for cls in (ConvNet, LuNet, EmbeddingNet)
} | {f"reid.models.{cls.__name__}": cls for cls in (ConvNet, LuNet, EmbeddingNet)}
"""The backbones a checkpoint may name, by the `_target_` its config gives them."""
# Arguments that bring a backbone its starting weights (a file, a download): a checkpoint holds its own.
STARTING_WEIGHTS = {"weights": None, "pretrained": False}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at `path`, read with `weights_only=True` (tensors and plain values, no code).

    Raises `ConfigError` naming `ckpt_path` when the file is missing, is not a checkpoint, or holds
    objects that only a full unpickling could rebuild (which could run code, so it is refused).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path='{path}' does not exist. Pass the path of a .ckpt file written by train.py."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every unreadable file gets a message naming it
        text = " ".join(str(error).split())
        if "Unsupported global" in text:  # a class or function: garbage is "Unsupported operand"
            raise ConfigError(
                f"ckpt_path='{path}' was refused: it holds Python objects beyond tensors and plain values, "
                "and unpickling them could run code from the file. Only checkpoints written by train.py "
                f"(or files of tensors and plain values) are loaded. ({text[:300]})"
            ) from None
        raise ConfigError(
            f"ckpt_path='{path}' is not a readable checkpoint ({text[:300]}). Pass a .ckpt file written "
            "by train.py."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(
            f"ckpt_path='{path}' holds no model weights (no 'state_dict'): not a train.py checkpoint."
        )
    return checkpoint


def check_state_dict(
    path: str | Path, state: dict[str, torch.Tensor], module: nn.Module, advice: str
) -> None:
    """Fail clearly when the weights `state` read from `path` do not fit `module` (names and shapes)."""
    problems = state_dict_differences(state, module.state_dict())
    if problems:
        raise ConfigError(
            f"Checkpoint '{path}' does not match the configured model ({len(problems)} differences, e.g. "
            f"{'; '.join(problems[:3])}). {advice}"
        )


def check_checkpoint(path: str | Path, module: nn.Module) -> None:
    """Fail clearly when a checkpoint to resume from is unreadable, unsafe, or written by another model."""
    check_state_dict(
        path,
        read_checkpoint(path)["state_dict"],
        module,
        "Resume with the model settings of the run that wrote it (model, embed_dim), or start a new run "
        "without ckpt_path.",
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each `.ckpt` through `reid.files.atomic_file`: a temporary file
    beside it, renamed into place. (Lightning's own stages the file in $TMPDIR and moves it, which is a
    copy, cut short by a kill or a full disk, when $TMPDIR is on another filesystem than the outputs.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r}).")
        buffer = io.BytesIO()  # torch.save into the file would turn a full disk's OSError into a RuntimeError
        torch.save(checkpoint, buffer)
        with atomic_file(path) as file:
            file.write(buffer.getbuffer())


class ModelCard(pl.Callback):
    """Writes the model card (see the module docstring) into every checkpoint the Trainer saves.

    The input's channels and size are read from the first training batch as the backbone receives it (after
    the datamodule's device-side scaling), so they are what the weights were trained on.

    Args:
        model: the backbone's config (`_target_` and arguments).
        train_config: the whole training config, kept for reference.
    """

    def __init__(self, model: DictConfig | dict, train_config: DictConfig | dict):
        self.model = _plain(model)
        self.train_config = _plain(train_config)
        self.input_shape: tuple[int, ...] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.input_shape is None:
            self.input_shape = tuple(batch[0].shape[1:])  # (C, H, W)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        backbone = pl_module.backbone
        checkpoint[MODEL_CARD] = model_card(
            self.model,
            self.input_shape,
            self.train_config,
            getattr(backbone, "input_mean", None),
            getattr(backbone, "input_std", None),
        )


def model_card(
    model: dict,
    input_shape: tuple[int, ...] | None,
    train_config: dict | None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> dict[str, Any]:
    """The card of a backbone configured by `model` that takes (C, H, W) = `input_shape` inputs in [0, 1]
    and normalises them by the per-channel `mean` and `std` inside itself (None: 0 and 1, no change)."""
    channels, height, width = (
        input_shape if input_shape is not None else (model.get("in_channels"), None, None)
    )
    return {
        "version": CARD_VERSION,
        "model": model,
        "embed_dim": model.get("embed_dim"),
        "channels": channels,
        "input_size": None if height is None else [height, width],
        "pixel_scale": 255,
        "mean": list(mean) if mean is not None else [0.0] * channels if channels else None,
        "std": list(std) if std is not None else [1.0] * channels if channels else None,
        "train_config": train_config,
    }


def card_from_run_folder(path: str | Path) -> dict[str, Any] | None:
    """The card of a checkpoint written before cards existed, rebuilt from its run folder's
    `.hydra/config.yaml` (next to `checkpoints/`); None when that file is not there."""
    run_config = Path(path).resolve().parent.parent / ".hydra" / "config.yaml"
    if not run_config.is_file():
        return None
    return card_from_config(OmegaConf.load(run_config))


def card_from_config(config: DictConfig, backbone: nn.Module | None = None) -> dict[str, Any]:
    """The card of the backbone a training config describes: its input size from `dataset.height` and
    `width` (else `model.input_size`), its normalisation from `backbone` when given.

    `${hydra:...}` values cannot resolve outside Hydra, so only the model part is resolved.
    """
    model = _plain(config.model)
    dataset = _plain(config.get("dataset", {}))
    channels = model.get("in_channels", 3)
    size = [dataset["height"], dataset["width"]] if "height" in dataset else None
    if size is None and "input_size" in model:
        side = model["input_size"]
        size = [side, side] if isinstance(side, int) else list(side)
    return model_card(
        model,
        None if size is None else (channels, *size),
        OmegaConf.to_container(config),
        getattr(backbone, "input_mean", None),
        getattr(backbone, "input_std", None),
    )


def build_backbone(card: dict[str, Any], path: str | Path) -> nn.Module:
    """The backbone a model card describes, with freshly initialised weights.

    Only the networks of `reid.models` are built (`BACKBONES`): a card from someone else's file cannot make
    this call anything else. Starting weights the training config gave (`model.weights`, a file that may
    be gone; `model.pretrained`, a download) are neither read nor fetched: the checkpoint holds the weights.
    """
    model = dict(card["model"])
    target = model.pop("_target_", None)
    model |= {key: off for key, off in STARTING_WEIGHTS.items() if key in model}
    if target not in BACKBONES:
        raise ConfigError(
            f"The checkpoint '{path}' describes its backbone as {target!r}, which is not one of this "
            f"project's networks ({', '.join(sorted(BACKBONES))}); it cannot be rebuilt."
        )
    return BACKBONES[target](**model)


def load_backbone(
    path: str | Path, fallback_model: DictConfig | dict | None = None
) -> tuple[nn.Module, dict]:
    """The backbone saved in the checkpoint at `path`, with its weights, in eval mode on the CPU, and its
    model card.

    The card comes from the checkpoint itself, else (checkpoints written before cards) from its run
    folder, else from `fallback_model` (a backbone config the caller was given). The weights sit under
    `backbone.` in the checkpoint, as `EmbeddingModule` names them.
    """
    checkpoint = read_checkpoint(path)
    if not any(key.startswith("backbone.") for key in checkpoint["state_dict"]):
        raise ConfigError(
            f"ckpt_path='{path}' holds weights, but none of a backbone (no 'backbone.*' entries): it was not "
            "written by train.py of this project. Pass a .ckpt file of a train.py run, e.g. "
            "ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt."
        )
    card = checkpoint.get(MODEL_CARD) or card_from_run_folder(path)
    if card is None:
        if fallback_model is None:
            raise ConfigError(
                f"The checkpoint '{path}' does not describe its model (it was written before checkpoints "
                "carried a model card) and its run folder's .hydra/config.yaml is gone. Pass the model "
                "settings of the run that wrote it, e.g. model=lunet embed_dim=128."
            )
        print(f"'{path}' carries no model card and has no run folder: the model is configured by model=...")
        card = model_card(_plain(fallback_model), None, None)
    holder = nn.ModuleDict({"backbone": build_backbone(card, path)})
    check_state_dict(
        path,
        checkpoint["state_dict"],
        holder,
        "Pass the model settings of the run that wrote it (model=..., embed_dim=...).",
    )
    holder.load_state_dict(checkpoint["state_dict"])
    return holder["backbone"].eval(), card


def _plain(config: DictConfig | dict) -> dict:
    """A resolved config as plain dicts and lists (what `weights_only` loading accepts)."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return dict(config)
