"""evaluate.py on unseen-class data: a checkpoint with its model card, a tiny folder of coloured PNGs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from reid.data.mars import to_unit_float
from reid.models.tta import embed_with_tta
from reid.reporting.ranked_lists import leave_one_out_records
from reid.retrieval.unseen_classes import leave_one_out, unseen_class_metrics
from reid.retrieval.verification import class_pair_statistics
from reid.tasks.evaluate import evaluate
from reid.training.checkpoints import load_backbone
from tests.helpers.browser import check_rendered_report, needs_chromium
from tests.helpers.unseen_classes import ColouredImagesDataModule, write_checkpoint, write_coloured_images

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8", "map_at_r", "r_precision", "nmi"}
KEYS |= {"num_query", "roc_auc", "tar_at_far_1e-2", "tar_at_far_1e-3", "threshold"}


def unseen_config(tmp_path: Path, images: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                f"paths.output_dir={tmp_path / 'eval'}",
                f"ckpt_path={write_checkpoint(tmp_path / 'model.ckpt')}",
                "evaluator=unseen_classes",
                "n_show=3",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.dataset = OmegaConf.create(
            {"_target_": "tests.helpers.unseen_classes.ColouredImagesDataModule", "root": str(images)}
        )
    return cfg


@pytest.fixture
def images(tmp_path) -> Path:
    return write_coloured_images(tmp_path / "images")


def test_evaluate_unseen_classes_writes_metrics_features_pictures_and_records(images, tmp_path):
    result = evaluate(unseen_config(tmp_path, images))
    out = tmp_path / "eval"
    assert json.loads((out / "metrics.json").read_text()) == result
    assert (
        KEYS <= set(result) and result["kind"] == "unseen_classes" and result["dataset"] == "ColouredImages"
    )
    assert (result["num_images"], result["num_classes"], result["num_query"]) == (20, 4, 20)
    features = np.load(out / "features.npz")
    assert set(features) == {"features", "labels", "paths"}
    assert features["features"].shape == (20, 8) and features["labels"].tolist() == [
        i // 5 for i in range(20)
    ]
    assert [Path(p).name for p in features["paths"]][:2] == ["img_0.png", "img_1.png"]
    # The numbers are those of the saved features: the files tell the same story as metrics.json.
    expected = unseen_class_metrics(features["features"], features["labels"])
    expected |= class_pair_statistics(features["features"], features["labels"]).metrics()
    assert {k: result[k] for k in expected} == pytest.approx(expected)
    assert len(list((out / "rankings").glob("query_*_label*.png"))) == 3
    assert (out / "verification.png").stat().st_size > 1000

    ranked = leave_one_out(features["features"], features["labels"], keep=10)
    records = leave_one_out_records(ranked, list(features["paths"]), features["labels"])
    aps = [r.ap for r in records]
    assert aps == sorted(aps) and len(records) == 20
    assert np.mean(aps) == pytest.approx(result["map_at_r"])
    worst = records[0]
    assert len(worst.ranked) == 10 and worst.path == features["paths"][worst.index]
    assert [item.correct for item in worst.ranked] == [item.label == worst.label for item in worst.ranked]
    assert [item.distance for item in worst.ranked] == sorted(item.distance for item in worst.ranked)


@pytest.mark.slow
def test_evaluate_embeds_with_the_configured_tta(images, tmp_path):
    """features.npz holds the mean of the 10 flip_crops views, as `embed_with_tta` computes it here."""
    cfg = unseen_config(tmp_path, images, "evaluator.tta=flip_crops")
    evaluate(cfg)
    backbone, _ = load_backbone(cfg.ckpt_path)
    datamodule = ColouredImagesDataModule(str(images))
    datamodule.setup()
    batches = [to_unit_float(images) for images, _ in datamodule.test_dataloader()]
    with torch.inference_mode():
        expected = torch.cat([embed_with_tta(backbone, b, "flip_crops") for b in batches])
        plain = torch.cat([backbone(b) for b in batches])
    saved = torch.from_numpy(np.load(tmp_path / "eval" / "features.npz")["features"])
    assert torch.allclose(saved, expected, atol=1e-5) and not torch.allclose(saved, plain, atol=1e-3)


@pytest.mark.slow
@needs_chromium
def test_a_browser_renders_evaluate_s_report_with_its_metrics(images, tmp_path):
    """report.html of an evaluation opens from disk: every thumbnail and the histogram load, and the page
    shows metrics.json's values and query count."""
    evaluate(unseen_config(tmp_path, images, "report_queries=5"))
    out = tmp_path / "eval"
    dom, _ = check_rendered_report(out / "report.html", out / "metrics.json", tmp_path / "shot.png")
    assert int(re.search(r'data-images-total="(\d+)"', dom).group(1)) == 1 + 5 * 11  # histogram, 5 lists
    assert re.search(r'id="num-shown">(\d+)<', dom).group(1) == "5"
