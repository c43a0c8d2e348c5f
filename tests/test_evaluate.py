"""MARS end to end through the CLI: train.py experiment=mars_smoke, then evaluate.py on its checkpoint."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from reid.data.mars import MarsSplits, load_mars
from reid.errors import ConfigError, DataError
from reid.retrieval.evaluators import protocol_evaluator
from reid.retrieval.ranking import rank_metrics
from reid.retrieval.verification import query_gallery_pair_statistics
from reid.tasks.evaluate import evaluate
from reid.tasks.train import train
from reid.training.checkpoints import MODEL_CARD, check_checkpoint
from tests.helpers.cli import run_script
from tests.helpers.configs import compose_evaluate
from tests.helpers.mars import write_small_mars

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["mAP", "rank1", "rank5", "rank10", "rank20"]


@pytest.fixture(scope="module")
def mars(tmp_path_factory) -> Path:
    """A synthetic tree with enough training identities (16) for the smoke recipe to generalise."""
    root = tmp_path_factory.mktemp("mars") / "MARS"
    write_small_mars(root, ids_train=16)
    return root


@pytest.fixture(scope="module")
def trained(mars, tmp_path_factory) -> Path:
    """The run folder of `train.py experiment=mars_smoke`, shortened to 40 steps."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    result = run_script(
        "train.py",
        "experiment=mars_smoke",
        f"dataset.root={mars}",
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
        "scheduler.decay_start=30",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def chance_map(splits: MarsSplits, draws: int = 20) -> float:
    """The protocol's mAP of random rankings (uniform random distances), averaged over draws."""
    evaluator = protocol_evaluator(splits.protocol)
    g_pids = np.array([t.pid for t in splits.gallery])
    labels = dict(
        q_pids=[t.pid for t in splits.query],
        g_pids=g_pids,
        q_camids=[t.camid for t in splits.query],
        g_camids=[t.camid for t in splits.gallery],
        max_rank=1,  # mAP does not depend on it
        ap=evaluator.ap,
        g_junk=evaluator.junk_mask(g_pids),
    )
    rng = np.random.default_rng(0)
    shape = (len(splits.query), len(splits.gallery))
    return float(np.mean([rank_metrics(rng.random(shape), **labels).mAP for _ in range(draws)]))


def valid_queries(splits: MarsSplits) -> int:
    """Queries with a gallery tracklet of their identity seen by another camera."""
    return sum(any(g.pid == q.pid and g.camid != q.camid for g in splits.gallery) for q in splits.query)


def test_training_logs_reid_metrics_by_step(trained, mars):
    events = EventAccumulator(str(trained / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert {f"val/{m}" for m in [*METRICS, "roc_auc", "tar_at_far_1e-3", "threshold"]} <= set(
        events.Tags()["scalars"]
    )
    assert "val/verification" in events.Tags()["images"]  # the pair distance histograms
    assert [e.step for e in events.Scalars("val/mAP")] == [19, 39]  # every 20 steps, across epochs
    assert events.Scalars("val/mAP")[-1].value > chance_map(load_mars(mars, "official")) + 0.3
    lr = [e.value for e in events.Scalars("train/lr")]
    assert lr[0] == pytest.approx(1e-3) and lr[-1] < 1e-2 * lr[0]  # decayed from step 30 to 0.001x at 40
    checkpoints = {p.name for p in (trained / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in checkpoints and any(re.fullmatch(r"best-step\d{6}\.ckpt", c) for c in checkpoints)


@pytest.mark.slow
def test_evaluate_cli_official_with_reranking(trained, mars, tmp_path):
    eval_dir = tmp_path / "eval"
    result = run_script(
        "evaluate.py",
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
        f"dataset.root={mars}",
        "dataset.num_workers=0",
        "rerank=true",
        "n_show=3",
        f"hydra.run.dir={eval_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Run folder: {eval_dir}" in result.stdout and "rank20" in result.stdout
    splits = load_mars(mars, "official")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "official"
    assert metrics["num_query"] == metrics["num_valid_query"] == len(splits.query)  # every query has a match
    assert metrics["num_gallery"] == sum(t.pid != -1 for t in splits.gallery)  # junk takes no part
    assert metrics["mAP"] > chance_map(splits) + 0.3
    assert set(metrics["reranked"]) == {*METRICS, "num_valid_query"}
    assert all(0 <= metrics["reranked"][m] <= 1 for m in METRICS)

    features = np.load(eval_dir / "features.npz")
    assert features["q_features"].shape == (len(splits.query), 32)
    assert features["g_features"].shape == (len(splits.gallery), 32)
    assert features["q_pids"].tolist() == [t.pid for t in splits.query]
    assert features["g_camids"].tolist() == [t.camid for t in splits.gallery]
    assert len(list((eval_dir / "rankings").glob("query_*.png"))) == 3
    assert not (trained / "metrics.json").exists()  # the training run is left alone

    # Verification of the pairs the ranking counts (junk skipped), recomputed from the saved features.
    junk = features["g_pids"] == -1
    expected = query_gallery_pair_statistics(
        *(features[k] for k in ("q_features", "g_features", "q_pids", "g_pids", "q_camids", "g_camids")), junk
    ).metrics()
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    assert metrics["roc_auc"] > 0.7  # trained: same-identity pairs are mostly closer
    assert (eval_dir / "verification.png").stat().st_size > 1000


def test_evaluate_torchreid_protocol(trained, mars, tmp_path):
    cfg = compose_evaluate(
        tmp_path,
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
        f"dataset.root={mars}",
        "dataset.protocol=torchreid",
        "dataset.num_workers=0",
        "n_show=1",
    )
    metrics = evaluate(cfg)
    splits = load_mars(mars, "torchreid")
    assert metrics["protocol"] == "torchreid" and "reranked" not in metrics
    assert metrics["num_query"] == len(splits.query) and metrics["num_gallery"] == len(splits.gallery)
    assert metrics["num_valid_query"] == valid_queries(splits) < len(splits.query)  # query-only ids skipped
    assert metrics["mAP"] > chance_map(splits) + 0.3
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


def test_checkpoint_carries_its_model_card(trained):
    card = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)[MODEL_CARD]
    assert card["model"]["_target_"] == "reid.models.convnet.ConvNet" and card["embed_dim"] == 32
    assert (card["channels"], card["input_size"]) == (3, [64, 32])  # mars_smoke's frames, as the net saw them
    assert (card["pixel_scale"], card["mean"], card["std"]) == (255, [0.0] * 3, [1.0] * 3)
    assert card["train_config"]["dataset"]["height"] == 64 and card["train_config"]["optimizer"]["lr"] == 1e-3


def test_checkpoint_copied_alone_evaluates_as_in_its_run(trained, mars, tmp_path):
    """The model card rebuilds the model and its input size: no run folder, no model settings needed."""
    alone = tmp_path / "empty" / "model.ckpt"
    alone.parent.mkdir()
    shutil.copy(trained / "checkpoints" / "last.ckpt", alone)
    data = [f"dataset.root={mars}", "dataset.protocol=torchreid", "dataset.num_workers=0", "n_show=1"]
    in_run = evaluate(
        compose_evaluate(tmp_path / "a", f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", *data)
    )
    copied = evaluate(compose_evaluate(tmp_path / "b", f"ckpt_path={alone}", *data))
    assert copied == in_run and copied["mAP"] > chance_map(load_mars(mars, "torchreid")) + 0.3


def without_card(trained: Path, folder: Path) -> Path:
    """The run's last checkpoint as written before checkpoints carried a model card, saved in `folder`."""
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    del checkpoint[MODEL_CARD]
    path = folder / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    return path


def test_checkpoint_without_card_reads_its_run_folder(trained, mars, tmp_path):
    old_run = tmp_path / "old_run"
    ckpt = without_card(trained, old_run)
    shutil.copytree(trained / ".hydra", old_run / ".hydra")
    data = [f"dataset.root={mars}", "dataset.protocol=torchreid", "dataset.num_workers=0", "n_show=1"]
    expected = evaluate(
        compose_evaluate(tmp_path / "a", f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", *data)
    )
    assert evaluate(compose_evaluate(tmp_path / "b", f"ckpt_path={ckpt}", *data)) == expected


def test_checkpoint_without_card_or_run_folder_asks_for_the_model(trained, mars, tmp_path):
    """With nothing to describe it, the evaluate config's model (LuNet) is built and refused, with advice."""
    ckpt = without_card(trained, tmp_path / "orphan")
    cfg = compose_evaluate(tmp_path, f"ckpt_path={ckpt}", f"dataset.root={mars}")
    with pytest.raises(ConfigError, match=r"does not match the configured model.*model=\.\.\., embed_dim="):
        evaluate(cfg)
    with pytest.raises(ConfigError, match="ckpt_path"):
        evaluate(compose_evaluate(tmp_path, f"dataset.root={mars}"))


def test_checkpoint_of_other_images_is_refused(digits_cfg, mars, tmp_path):
    """A digits model (1-channel 28x28) cannot rank RGB MARS frames: one paragraph says so."""
    run = digits_cfg("digits", "trainer.max_epochs=1")
    train(run)
    cfg = compose_evaluate(
        tmp_path, f"ckpt_path={run.paths.output_dir}/checkpoints/last.ckpt", f"dataset.root={mars}"
    )
    with pytest.raises(ConfigError, match="1-channel images"):
        evaluate(cfg)


class Payload:
    """Unpickling this runs `Path.touch` on a marker file: what a crafted checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_checkpoint_that_would_run_code_is_refused_unrun(mars, tmp_path):
    marker = tmp_path / "payload_ran"
    ckpt = tmp_path / "shared.ckpt"
    torch.save({"state_dict": {}, "note": Payload(marker)}, ckpt)
    cfg = compose_evaluate(tmp_path, f"ckpt_path={ckpt}", f"dataset.root={mars}")
    with pytest.raises(ConfigError, match="refused.*could run code"):
        evaluate(cfg)
    with pytest.raises(ConfigError, match="refused"):
        check_checkpoint(ckpt, torch.nn.Linear(1, 1))
    assert not marker.exists()


def test_missing_mars_root(trained, tmp_path):
    missing = tmp_path / "no-mars-here"
    cfg = compose_evaluate(
        tmp_path, f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", f"dataset.root={missing}"
    )
    with pytest.raises(DataError, match=str(missing)):
        evaluate(cfg)
