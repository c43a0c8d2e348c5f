"""The GPU-ready options on the CPU: channels_last, compile, bf16-mixed precision, and their config keys."""

import copy
import math
import subprocess
import sys
from functools import partial

import pytest
import torch
from hydra.utils import instantiate

from reid.losses import BatchHardTripletLoss
from reid.models.convnet import ConvNet
from reid.tasks.train import train
from reid.training.module import EmbeddingModule
from tests.helpers.configs import compose_train


def make_module(backbone: torch.nn.Module, **options) -> EmbeddingModule:
    return EmbeddingModule(backbone, BatchHardTripletLoss(0.5), partial(torch.optim.Adam, lr=1e-3), **options)


def conv_weights(module: EmbeddingModule) -> list[torch.Tensor]:
    return [p for p in module.backbone.parameters() if p.dim() == 4]


@pytest.mark.parametrize("train_mode", [False, True])
def test_channels_last_gives_the_same_embeddings(train_mode):
    torch.manual_seed(0)
    backbone = ConvNet(embed_dim=8)
    default = make_module(copy.deepcopy(backbone)).train(train_mode)
    fast = make_module(backbone, channels_last=True).train(train_mode)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(fast))
    assert not all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(default))
    images = torch.rand(12, 1, 28, 28)
    torch.testing.assert_close(fast(images), default(images), rtol=1e-4, atol=1e-5)


def test_config_keys_compose_and_instantiate(tmp_path):
    """Off by default; on, the backbone is NHWC and compiled lazily (nothing compiles until a forward)."""
    module = instantiate(compose_train(tmp_path, "dataset=digits").module)
    assert not module.channels_last and module.backbone._compiled_call_impl is None

    cfg = compose_train(tmp_path, "dataset=digits", "channels_last=true", "compile=true")
    module = instantiate(cfg.module)
    assert module.channels_last and module.backbone._compiled_call_impl is not None
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(module))
    assert list(module.state_dict()) == list(make_module(ConvNet()).state_dict())  # checkpoints still match

    gpu = compose_train(tmp_path, "trainer=gpu").trainer  # (compose_train forces the CPU accelerator)
    assert (gpu.precision, gpu.benchmark) == ("bf16-mixed", True)


def test_channels_last_module_trains_one_step(digits_cfg):
    cfg = digits_cfg("cl", "channels_last=true", "trainer.max_epochs=1", "dataset.batches_per_epoch=1")
    metrics = train(cfg)
    assert metrics["train/loss"] > 0 and all(math.isfinite(v) for v in metrics.values())
    state = torch.load(cfg.paths.output_dir + "/checkpoints/last.ckpt", weights_only=True)
    assert state["global_step"] == 1


def test_bf16_mixed_on_cpu_trains_with_float32_losses(digits_cfg, monkeypatch):
    """The backbone runs under bf16 autocast, the loss gets float32 embeddings, the metrics are finite;
    validation embeds under `torch.inference_mode` (Lightning's validation inside `fit` only uses no_grad).

    bf16 is emulated (about 10x slower) on CPUs without AVX512-BF16, so the run is 2 steps and validation
    embeds 2 x 50 images.
    """
    dtypes = {"backbone": set(), "loss": set()}
    modes = set()  # (training, inference mode) of every backbone call
    backbone_forward, loss_forward = ConvNet.forward, BatchHardTripletLoss.forward

    def record_backbone(self, images):
        embeddings = backbone_forward(self, images)
        dtypes["backbone"].add(embeddings.dtype)
        modes.add((self.training, torch.is_inference_mode_enabled()))
        return embeddings

    def record_loss(self, embeddings, labels):
        loss, stats = loss_forward(self, embeddings, labels)
        dtypes["loss"].update({embeddings.dtype, loss.dtype, stats.hardest_neg.dtype})
        return loss, stats

    monkeypatch.setattr(ConvNet, "forward", record_backbone)
    monkeypatch.setattr(BatchHardTripletLoss, "forward", record_loss)
    short = ["trainer.max_epochs=1", "dataset.batches_per_epoch=2", "dataset.eval_batch_size=50"]
    metrics = train(
        digits_cfg("bf16", "trainer.precision=bf16-mixed", *short, "+trainer.limit_val_batches=1")
    )
    assert dtypes == {"backbone": {torch.bfloat16}, "loss": {torch.float32}}
    assert modes == {(True, False), (False, True)}
    assert {"train/loss", "train/hardest_neg", "val/mAP"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())


COMPILED_STEP = """
import torch
from functools import partial
from reid.losses import BatchHardTripletLoss
from reid.models.convnet import ConvNet
from reid.training.module import EmbeddingModule
module = EmbeddingModule(ConvNet(), BatchHardTripletLoss(0.5), partial(torch.optim.Adam), compile=True)
loss, _ = module.loss(module(torch.rand(8, 1, 28, 28)), torch.arange(4).repeat(2))
loss.backward()
assert torch.isfinite(loss) and module.backbone.head[-1].weight.grad is not None
"""


@pytest.mark.slow
def test_compiled_backbone_runs_a_training_step():
    """A real inductor compile (minutes on a busy CPU): skipped when it fails here or exceeds 60 s."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", COMPILED_STEP], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.skip("torch.compile took over 60 s on this CPU")
    if result.returncode and "inductor" in result.stderr:
        pytest.skip(f"inductor cannot compile here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
