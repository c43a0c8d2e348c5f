"""ImageNet backbones with TriNet's head (`reid.models.trinet`): layout, normalisation inside the network,
weights files, offline downloads, the model card, and a short training run. Nothing is downloaded: the
networks have random weights or weights from files the tests write."""

from __future__ import annotations

import urllib.error
from types import SimpleNamespace

import huggingface_hub.constants
import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from reid.errors import ConfigError
from reid.models import EmbeddingNet, LuNet
from reid.tasks.train import train
from reid.training.checkpoints import MODEL_CARD, ModelCard, load_backbone
from tests.helpers.cli import train_error_paragraph
from tests.helpers.configs import compose_train
from tests.helpers.mars import write_small_mars

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    """The state dict of torchvision's ResNet-18 with its classifier (fc), random weights and random batch
    norm statistics, as an ImageNet weights file holds it (read only)."""
    torch.manual_seed(1)
    network = torchvision.models.resnet18(weights=None)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return network.state_dict()


@pytest.fixture(scope="module")
def resnet18() -> EmbeddingNet:
    """A ResNet-18 EmbeddingNet with random weights, in eval mode (read only)."""
    return EmbeddingNet("resnet18", embed_dim=8).eval()


def assert_trunk_holds(net: EmbeddingNet, reference: dict[str, torch.Tensor]) -> None:
    """Every tensor of `net`'s trunk is the reference's, which has the classifier (fc) besides."""
    trunk = net.trunk.state_dict()
    assert set(reference) - set(trunk) == {"fc.weight", "fc.bias"}
    assert all(torch.equal(trunk[key], reference[key]) for key in trunk)


def test_head_is_trinets_and_the_trunk_is_the_network_up_to_its_classifier(resnet18):
    net = resnet18
    linear, norm, relu, embed = net.head
    assert (type(linear), type(norm), type(relu), type(embed)) == (
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
    )
    assert (linear.in_features, linear.out_features, norm.num_features) == (512, 1024, 1024)
    assert (embed.in_features, embed.out_features) == (1024, 8)
    # The trunk's features are what the full network's classifier receives.
    reference = torchvision.models.resnet18(weights=None).eval()
    reference.load_state_dict(net.trunk.state_dict(), strict=False)
    received = []
    reference.fc.register_forward_hook(lambda module, inputs, output: received.append(inputs[0]))
    images = torch.rand(2, 3, 32, 16)
    with torch.no_grad():
        reference(images)
        assert torch.allclose(net.trunk(images), received[0], atol=1e-6)
        assert net(images).shape == (2, 8)


def test_resnet50_is_the_papers_trinet():
    net = EmbeddingNet("resnet50", embed_dim=128)
    assert net.head[0].in_features == 2048 and net.head[0].out_features == 1024
    # 23,508,032 (ResNet-50 without fc) + 2048 x 1024 + 2 x 1024 (BN) + 1024 x 128 + 128
    assert sum(p.numel() for p in net.parameters()) == 23_508_032 + 2048 * 1024 + 2 * 1024 + 1024 * 128 + 128


def test_the_network_normalises_its_input_by_imagenets_mean_and_std(resnet18):
    net = resnet18
    images = torch.rand(3, 3, 32, 16)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(net(images), net.head(net.trunk((images - mean) / std)), atol=1e-6)
    assert (net.input_mean, net.input_std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_timm_network_by_name_has_the_same_head_and_its_own_normalisation():
    net = EmbeddingNet("test_resnet", embed_dim=8, source="timm", head_dim=16).eval()
    width = timm.create_model("test_resnet", num_classes=0).num_features
    assert [type(m) for m in net.head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (net.head[0].in_features, net.head[0].out_features, net.head[3].out_features) == (width, 16, 8)
    assert (net.input_mean, net.input_std) == (
        [0.5] * 3,
        [0.5] * 3,
    )  # its pretrained config's, not ImageNet's
    images = torch.rand(2, 3, 32, 16)
    with torch.no_grad():
        assert torch.allclose(net(images), net.head(net.trunk((images - 0.5) / 0.5)), atol=1e-6)


@pytest.mark.parametrize("form", ["raw.pth", "state_dict.pt", "model.pth", "file.safetensors"])
def test_weights_file_is_loaded_into_the_trunk(tmp_path, form, imagenet_state):
    state = imagenet_state
    path = tmp_path / form
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        key = path.stem
        torch.save(state if key == "raw" else {key: state, "epoch": 90}, path)
    assert_trunk_holds(EmbeddingNet("resnet18", embed_dim=8, weights=str(path)), state)


def test_weights_file_without_batch_norm_counters_loads(tmp_path, imagenet_state):
    """Old torchvision files (ResNet-50 V1) were saved before batch norm counted its batches."""
    state = {k: v for k, v in imagenet_state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    net = EmbeddingNet("resnet18", embed_dim=8, weights=str(tmp_path / "old.pth"))
    assert all(torch.equal(net.trunk.state_dict()[k], v) for k, v in state.items() if not k.startswith("fc."))


def test_timm_safetensors_file_is_loaded_without_its_classifier(tmp_path):
    torch.manual_seed(2)
    state = timm.create_model("test_resnet", num_classes=1000).state_dict()
    save_file(state, tmp_path / "model.safetensors")
    net = EmbeddingNet("test_resnet", source="timm", embed_dim=8, weights=str(tmp_path / "model.safetensors"))
    trunk = net.trunk.state_dict()
    assert set(state) - set(trunk) == {"fc.weight", "fc.bias"}
    assert all(torch.equal(trunk[key], state[key]) for key in trunk)


def test_weights_of_another_network_are_a_config_error(tmp_path):
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(
        ConfigError,
        match=r"model.weights='.*resnet34.pth' does not fit torchvision's resnet18 "
        r"\(\d+ differences, e.g. unexpected layer1.2",
    ):
        EmbeddingNet("resnet18", embed_dim=8, weights=str(tmp_path / "resnet34.pth"))


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (dict(name="resnet5"), "model.name=resnet5 is not a network of torchvision. Close names: resnet50"),
        (dict(name="resnet50q", source="timm"), "model.name=resnet50q is not a network of timm. Close names"),
        (dict(name="resnet18", source="keras"), "model.source='keras'"),
        (dict(name="squeezenet1_0"), "no linear classifier"),
        (dict(name="resnet18", in_channels=1), "model.in_channels=1"),
        (dict(name="resnet18", weights="missing.pth"), "model.weights='missing.pth' does not exist"),
        (dict(name="resnet18", weights="w.pth", pretrained=True), "keep one"),
    ],
)
def test_bad_settings_are_config_errors(settings, match):
    with pytest.raises(ConfigError, match=match):
        EmbeddingNet(embed_dim=8, **settings)


def test_weights_file_of_another_kind_is_a_config_error(tmp_path):
    (tmp_path / "w.h5").write_bytes(b"not torch")
    with pytest.raises(ConfigError, match=r"neither a PyTorch file \(.pth, .pt\) nor a .safetensors file"):
        EmbeddingNet("resnet18", embed_dim=8, weights=str(tmp_path / "w.h5"))


def test_grey_images_are_a_config_error(resnet18):
    with pytest.raises(ConfigError, match="takes RGB images .3 channels. but was given 1-channel ones"):
        resnet18(torch.rand(2, 1, 32, 16))


@pytest.fixture
def offline_torch_hub(tmp_path, monkeypatch):
    """torch.hub's cache in tmp_path and a download that fails as it does without a network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub" / "checkpoints"


def test_offline_torchvision_download_names_the_file_and_its_folder(offline_torch_hub, imagenet_state):
    with pytest.raises(ConfigError) as error:
        EmbeddingNet("resnet18", embed_dim=8, pretrained=True)
    message = str(error.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert f"put resnet18-f37072fd.pth in {offline_torch_hub}/" in message
    assert "model.weights=/path/to/resnet18-f37072fd.pth" in message
    # Put there, the file is what pretrained=true loads, still without a network.
    offline_torch_hub.mkdir(parents=True, exist_ok=True)  # torch.hub made it for the download
    torch.save(imagenet_state, offline_torch_hub / "resnet18-f37072fd.pth")
    assert_trunk_holds(EmbeddingNet("resnet18", embed_dim=8, pretrained=True), imagenet_state)


def test_offline_download_in_train_py_is_one_paragraph_and_exit_status_1(tmp_path, offline_torch_hub, capsys):
    """Hydra wraps what the backbone raises while it is instantiated; the CLI still prints one paragraph."""
    cfg = compose_train(tmp_path / "run", "dataset=digits", "model=resnet18", "model.pretrained=true")
    stderr = train_error_paragraph(cfg, capsys)
    assert stderr.startswith("\nError: model.pretrained=true could not download")
    assert "model.weights=/path/to/resnet18-f37072fd.pth" in stderr


def test_offline_timm_download_names_the_hugging_face_file(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # every request refused
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError) as error:
        EmbeddingNet("test_resnet", source="timm", embed_dim=8, pretrained=True)
    message = str(error.value)
    assert "https://huggingface.co/timm/test_resnet.r160_in1k/resolve/main/model.safetensors" in message
    assert "model.weights=/path/to/model.safetensors" in message


def test_model_card_records_the_normalisation_and_rebuilds_without_weights_or_download(
    tmp_path, offline_torch_hub, imagenet_state
):
    weights = tmp_path / "imagenet.pth"
    torch.save(imagenet_state, weights)
    config = {
        "_target_": "reid.models.trinet.EmbeddingNet",
        "name": "resnet18",
        "embed_dim": 8,
        "head_dim": 32,
        "weights": str(weights),
        "pretrained": False,
    }
    net = EmbeddingNet(**{k: v for k, v in config.items() if k != "_target_"})
    checkpoint = {"state_dict": {f"backbone.{k}": v for k, v in net.state_dict().items()}}
    card = ModelCard(config, {})
    card.input_shape = (3, 32, 16)
    card.on_save_checkpoint(None, SimpleNamespace(backbone=net), checkpoint)
    assert (checkpoint[MODEL_CARD]["mean"], checkpoint[MODEL_CARD]["std"]) == (IMAGENET_MEAN, IMAGENET_STD)
    checkpoint[MODEL_CARD]["model"]["pretrained"] = True  # as if trained from the download: not repeated
    torch.save(checkpoint, tmp_path / "model.ckpt")
    weights.unlink()  # the starting weights are gone: the checkpoint holds the trained ones
    rebuilt, _ = load_backbone(tmp_path / "model.ckpt")
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in net.state_dict().items())
    # The small backbones normalise nothing: their card says 0 and 1.
    lunet_card = ModelCard({"_target_": "reid.models.lunet.LuNet"}, {})
    lunet_card.input_shape = (3, 128, 64)
    lunet_checkpoint = {}
    lunet_card.on_save_checkpoint(None, SimpleNamespace(backbone=LuNet()), lunet_checkpoint)
    assert (lunet_checkpoint[MODEL_CARD]["mean"], lunet_checkpoint[MODEL_CARD]["std"]) == (
        [0.0] * 3,
        [1.0] * 3,
    )


def test_grey_dataset_with_an_imagenet_network_stops_with_a_config_error(tmp_path):
    cfg = compose_train(tmp_path, "dataset=digits", "model=resnet18", "trainer.max_steps=1")
    with pytest.raises(ConfigError, match="dataset=mars"):
        train(cfg)


@pytest.mark.slow  # 3 to 6 s on a 2-core CPU
def test_resnet18_trains_on_mars_and_its_checkpoint_carries_the_normalisation(tmp_path):
    """`experiment=mars_smoke model=resnet18`, shrunk to 2 steps on 32 x 16 frames."""
    mars = tmp_path / "MARS"
    write_small_mars(mars, ids_train=2, ids_test=3, distractors=1, junk=1, max_frames=3)
    cfg = compose_train(
        tmp_path / "run",
        "experiment=mars_smoke",
        "model=resnet18",
        f"dataset.root={mars}",
        "dataset.height=32",
        "dataset.width=16",
        "dataset.P=2",
        "dataset.K=2",
        "dataset.val_frames_per_tracklet=1",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
    )
    metrics = train(cfg)
    assert "val/mAP" in metrics and torch.isfinite(torch.tensor(metrics["train/loss"]))
    backbone, card = load_backbone(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert (card["channels"], card["input_size"], card["mean"], card["std"]) == (
        3,
        [32, 16],
        IMAGENET_MEAN,
        IMAGENET_STD,
    )
    assert (
        isinstance(backbone, EmbeddingNet) and backbone.head[3].out_features == 32
    )  # mars_smoke's embed_dim
