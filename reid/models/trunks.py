"""ImageNet classification networks of torchvision or timm, by name, as feature extractors ("trunks").

A trunk maps normalised images (B, 3, H, W) to pooled features (B, F): the library's network with its
classifier taken off (global average pooling stays, so any input size works). Its ImageNet weights come
from a local file (`load_weights`), or from the library's download (`pretrained=True`), which needs the
internet once; offline, the download stops with a `ConfigError` that names the file to fetch and where
to put it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
import torchvision
from torch import nn

from reid.errors import ConfigError

SOURCES = ("torchvision", "timm")
# torchvision's ImageNet weights, every one of them, expect images normalised by these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision networks that also have auxiliary classifiers: built without them (one output, features).
AUXILIARY_CLASSIFIERS = ("googlenet", "inception_v3")


@dataclass
class Trunk:
    """A network without its classifier and what goes with it.

    Attributes:
        network: images (B, 3, H, W), normalised -> features (B, features).
        features: F, the width of the pooled features.
        classifier: module names of the classifier that was taken off: a weights file's tensors under them
            are left out when it is loaded.
        mean, std: per-channel normalisation its ImageNet weights expect of images in [0, 1].
        description: the network, as messages name it ("torchvision's resnet50").
    """

    network: nn.Module
    features: int
    classifier: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str


def build_trunk(name: str, source: str, pretrained: bool) -> Trunk:
    """The trunk of the network `name` of library `source` ("torchvision" or "timm"), with random weights,
    or with the library's ImageNet weights when `pretrained`."""
    if source == "torchvision":
        return torchvision_trunk(name, pretrained)
    if source == "timm":
        return timm_trunk(name, pretrained)
    raise ConfigError(
        f"model.source={source!r} is not a library of networks: use one of {', '.join(SOURCES)}."
    )


def torchvision_trunk(name: str, pretrained: bool) -> Trunk:
    """torchvision's classification network `name`, its last linear layer (the classifier) replaced by an
    identity, so that it returns the features that layer took."""
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ConfigError(unknown_network(name, "torchvision", known, "model=timm model.name=..."))
    options = {"aux_logits": False} if name in AUXILIARY_CLASSIFIERS else {}
    if not pretrained:
        network = torchvision.models.get_model(name, weights=None, **options)
    else:
        try:
            network = torchvision.models.get_model(name, weights="DEFAULT", **options)
        except OSError as error:
            raise ConfigError(torchvision_offline(name, error)) from None
    linears = [module_name for module_name, m in network.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"torchvision's {name} has no linear classifier to take off (its classifier is convolutional), "
            "so it has no feature vector for the embedding head: choose another model.name, e.g. resnet50."
        )
    classifier = linears[-1]
    features = network.get_submodule(classifier).in_features
    parent, _, attribute = classifier.rpartition(".")
    setattr(network.get_submodule(parent), attribute, nn.Identity())
    return Trunk(network, features, (classifier,), IMAGENET_MEAN, IMAGENET_STD, f"torchvision's {name}")


def torchvision_offline(name: str, error: OSError) -> str:
    """What to do when torchvision could not download `name`'s ImageNet weights: the file and its folder."""
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    file = url.rsplit("/", 1)[-1]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"model.pretrained=true could not download torchvision's ImageNet weights of {name} ({error}). "
        f"Offline, fetch {url} on a machine that is online and put {file} in {folder}/ (then "
        f"model.pretrained=true finds it there), or pass the file directly: model.weights=/path/to/{file}."
    )


def timm_trunk(name: str, pretrained: bool) -> Trunk:
    """timm's network `name` (an architecture, or architecture.tag such as resnet50d.a1_in1k) built with
    `num_classes=0`, which takes its classifier off and keeps its pooling; its normalisation is the
    `mean` and `std` of its pretrained config."""
    timm = import_timm()
    if not timm.is_model(name):
        raise ConfigError(
            unknown_network(name, "timm", timm.list_models(), "model=torchvision model.name=...")
        )
    try:
        network = timm.create_model(name, pretrained=pretrained, num_classes=0)
    except OSError as error:
        raise ConfigError(timm_offline(name, timm, error)) from None
    config = network.pretrained_cfg
    classifier = config.get("classifier") or ()
    classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    features = getattr(network, "head_hidden_size", None) or network.num_features
    return Trunk(network, features, classifier, tuple(config["mean"]), tuple(config["std"]), f"timm's {name}")


def timm_offline(name: str, timm: ModuleType, error: OSError) -> str:
    """What to do when timm could not download `name`'s weights: the Hugging Face file to fetch."""
    config = timm.models.get_pretrained_cfg(name)
    hub_id = config.hf_hub_id if config else None
    where = f"https://huggingface.co/{hub_id}/resolve/main/model.safetensors" if hub_id else "its weights"
    return (
        f"model.pretrained=true could not download timm's ImageNet weights of {name} "
        f"({' '.join(str(error).split())[:200]}). Offline, fetch {where} on a machine that is online, copy "
        "it here and pass it: model.weights=/path/to/model.safetensors (with model.pretrained=false)."
    )


def import_timm() -> ModuleType:
    """The timm package, or a `ConfigError` saying how to install it (it is an optional extra)."""
    try:
        import timm
    except ImportError:
        raise ConfigError(
            'model.source=timm needs the timm package, an optional extra: pip install -e ".[timm]".'
        ) from None
    return timm


def unknown_network(name: str, source: str, known: list[str], other: str) -> str:
    """The message for a network name that `source` does not have, with the closest names it has."""
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    suggestion = f" Close names: {', '.join(close)}." if close else ""
    return (
        f"model.name={name} is not a network of {source}.{suggestion} The other library's networks are "
        f"built with {other}."
    )
