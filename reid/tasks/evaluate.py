"""Evaluate a trained checkpoint on a test set: re-ID ranking (query/gallery data) or unseen-class retrieval.

`python evaluate.py ckpt_path=<file>.ckpt [dataset=<name>] dataset.root=... [rerank=true]` rebuilds the
model from the checkpoint's model card (the checkpoint alone is enough), feeds it images of the size it
was trained on (with `evaluator.tta`'s test-time augmentation), and writes, in its own run folder:

- `metrics.json`: the dataset, its kind, and for query/gallery data (MARS, Market-1501, own query and
  gallery lists) the protocol, mAP, rank1/5/10/20 and the query and gallery counts (the same under
  `reranked` with re-ranking); for unseen-class data (CUB-200, SOP, own test lists) recall_at_1/2/4/8,
  map_at_r, r_precision, nmi, num_query and mAP (leave-one-out); for both, the verification statistics
  roc_auc, tar_at_far_1e-2, tar_at_far_1e-3 and threshold (docs/metrics.md).
- `features.npz`: query/gallery data: `q_features`, `q_pids`, `q_camids`, `g_features`, `g_pids`,
  `g_camids`; unseen-class data: `features` (N, D), `labels` (N,), `paths` (N,).
- `rankings/*.png`: ranked lists of `n_show` queries (leave-one-out lists for unseen-class data).
- `verification.png`: the distance histograms of same- and different-identity pairs with the threshold.
- `report.html` (with `report_files/`): all of the above on one page that opens from disk, the ranked lists
  of the `report_queries` worst queries first (`reid.reporting.html_report`).

The datamodule's `kind` ("query_gallery", also assumed without one, or "unseen_classes") chooses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import track
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader

from reid.data.mars import to_unit_float
from reid.errors import ConfigError
from reid.files import atomic_file, write_text
from reid.models.tta import embed_with_tta
from reid.reporting.figures import verification_histograms
from reid.reporting.html_report import write_report
from reid.reporting.ranked_lists import (
    QueryRecord,
    leave_one_out_records,
    query_gallery_records,
    save_ranked_lists,
)
from reid.retrieval.distances import euclidean_distances
from reid.retrieval.evaluators import Tracklets, ValidationSet
from reid.retrieval.rerank import re_ranking
from reid.retrieval.unseen_classes import leave_one_out
from reid.retrieval.verification import Verification
from reid.training.checkpoints import load_backbone

QUERY_GALLERY, UNSEEN_CLASSES = "query_gallery", "unseen_classes"
METRIC_KEYS = ("mAP", "rank1", "rank5", "rank10", "rank20")
TOP_K = 10  # places of each ranked list, in pictures and records


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation found: `metrics` (what `metrics.json` holds), the CMC curve (query/gallery
    data only, else None), the verification of the test pairs, and every query's ranked list, worst AP
    first (`reid.reporting.ranked_lists.QueryRecord`)."""

    metrics: dict[str, Any]
    cmc: list[float] | None
    verification: Verification
    records: list[QueryRecord]


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `cfg.ckpt_path` as configured; returns what `metrics.json` holds."""
    output_dir = Path(cfg.paths.output_dir)
    print(f"Run folder: {output_dir}")
    if not cfg.ckpt_path:
        raise ConfigError(
            "evaluate.py needs ckpt_path=<run>/checkpoints/<file>.ckpt, a checkpoint written by train.py."
        )
    backbone, card = load_backbone(cfg.ckpt_path, fallback_model=cfg.model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone = backbone.to(device)
    configured = str(cfg.dataset.get("_target_", "")).rsplit(".", 1)[-1]
    datamodule = instantiate(cfg.dataset, **input_size(card, cfg.ckpt_path, configured))
    datamodule.setup("test")
    evaluator = instantiate(cfg.evaluator)
    embed = EmbeddingRun(backbone, device, evaluator.tta)
    if getattr(datamodule, "kind", QUERY_GALLERY) == UNSEEN_CLASSES:
        evaluation = evaluate_unseen_classes(datamodule, evaluator, embed, output_dir)
    else:
        evaluation = evaluate_query_gallery(datamodule, evaluator, embed, output_dir, cfg)
    result = {"dataset": dataset_name(datamodule), **evaluation.metrics}
    write_text(output_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    save_ranked_lists(output_dir / "rankings", evaluation.records, cfg.n_show)
    save_verification_figure(output_dir / "verification.png", evaluation.verification, result)
    report = write_report(
        output_dir,
        title(result),
        result,
        evaluation.records,
        cmc=evaluation.cmc,
        figures={"Distances of same- and different-identity pairs": output_dir / "verification.png"},
        n_show=cfg.report_queries,
    )
    Console().print(metrics_table(result))
    print(f"{counts_line(result)}\nReport: {report}\nRun folder: {output_dir}")
    return result


def dataset_name(datamodule) -> str:
    """The datamodule's `name` (MARS, Market-1501, ...), else its class name without `DataModule`."""
    return getattr(datamodule, "name", None) or type(datamodule).__name__.removesuffix("DataModule")


def input_size(card: dict, path: str, dataset: str, data_channels: int = 3) -> dict[str, int]:
    """The (height, width) to feed the checkpoint's backbone, as datamodule arguments; stops clearly when
    the backbone was trained on images of another number of channels than the data has."""
    if card["channels"] is not None and card["channels"] != data_channels:
        trained_on = (card.get("train_config") or {}).get("dataset", {}).get("_target_", "other data")
        raise ConfigError(
            f"The checkpoint '{path}' was trained on {card['channels']}-channel images ({trained_on}), but "
            f"evaluate.py feeds it {data_channels}-channel {dataset} images. Pass a checkpoint of a model "
            "trained on RGB images like these (for MARS e.g. experiment=mars_smoke or mars_seed)."
        )
    if card["input_size"] is None:
        return {}
    height, width = card["input_size"]
    return {"height": height, "width": width}


@dataclass(frozen=True)
class EmbeddingRun:
    """How images become embeddings here: the backbone on `device` with test-time augmentation `tta`."""

    backbone: nn.Module
    device: torch.device
    tta: str | None

    def __call__(self, loader: DataLoader, name: str) -> ValidationSet:
        """Embeddings (N, D) float32 on the CPU of every image of an (images, *fields) loader, and its fields.

        Runs under `torch.inference_mode`, with bf16 autocast on a GPU.
        """
        embeddings, fields = [], []
        device = self.device
        with (
            torch.inference_mode(),
            torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"),
        ):
            for images, *rest in track(loader, f"Embedding {name} images"):
                images = to_unit_float(images.to(device, non_blocking=True))
                embeddings.append(embed_with_tta(self.backbone, images, self.tta).float().cpu())
                fields.append(rest)
        return ValidationSet(
            torch.cat(embeddings), tuple(torch.cat(column) for column in zip(*fields, strict=True))
        )


def evaluate_query_gallery(
    datamodule, evaluator, embed: EmbeddingRun, output_dir: Path, cfg: DictConfig
) -> Evaluation:
    """Query tracklets (or images) ranked against the gallery by the dataset's protocol; re-ranked too when
    `cfg.rerank`."""
    query_frames, gallery_frames = (
        embed(loader, name)
        for loader, name in zip(datamodule.test_dataloader(), ("query", "gallery"), strict=True)
    )
    query, gallery = evaluator.pool(query_frames), evaluator.pool(gallery_frames)
    distmat = euclidean_distances(query.features, gallery.features).numpy()
    g_junk = evaluator.junk_mask(gallery.pids.numpy())
    ranking = evaluator.ranking(query, gallery, distmat)
    verification = evaluator.verification(query, gallery, distmat)
    metrics = {
        "kind": QUERY_GALLERY,
        "protocol": getattr(datamodule, "protocol", None),
        "num_query": len(query.pids),
        "num_gallery": int(np.count_nonzero(~g_junk)),
        **summary(evaluator.summarise(ranking)),
        **verification.metrics(),
    }
    if cfg.rerank:
        q_q = euclidean_distances(query.features, query.features).numpy()
        g_g = euclidean_distances(gallery.features, gallery.features).numpy()
        reranked = re_ranking(distmat, q_q, g_g, **cfg.reranking)
        metrics["reranked"] = summary(evaluator.rank(query, gallery, reranked))
    save_features(output_dir / "features.npz", query, gallery)
    splits = datamodule.splits
    records = query_gallery_records(distmat, splits.query, splits.gallery, g_junk, ranking.query_ap, TOP_K)
    return Evaluation(metrics, [float(c) for c in ranking.cmc], verification, records)


def evaluate_unseen_classes(datamodule, evaluator, embed: EmbeddingRun, output_dir: Path) -> Evaluation:
    """Every test image queries all the others: Recall@K, MAP@R, R-precision, NMI and verification."""
    loader = datamodule.test_dataloader()
    test = embed(loader[0] if isinstance(loader, list | tuple) else loader, "test")
    features, labels = test.embeddings, test.fields[0]
    paths = list(datamodule.test_paths)
    ranked = leave_one_out(features, labels, keep=max(TOP_K, *evaluator.ks))  # for metrics and lists
    metrics = {"kind": UNSEEN_CLASSES, "num_images": len(labels), "num_classes": len(labels.unique())}
    metrics |= evaluator.evaluate(test, ranked)
    metrics["num_query"] = int(metrics["num_query"])
    with atomic_file(output_dir / "features.npz") as file:
        np.savez(file, features=features.numpy(), labels=labels.numpy(), paths=np.array(paths))
    records = leave_one_out_records(ranked, paths, labels.numpy(), TOP_K)
    return Evaluation(metrics, None, evaluator.last_verification, records)


def save_features(path: Path, query: Tracklets, gallery: Tracklets) -> None:
    """Tracklet features (Q, D) and (G, D), pids and camids as `q_features`, `q_pids`, ..., `g_camids`."""
    with atomic_file(path) as file:
        np.savez(
            file,
            q_features=query.features.numpy(),
            q_pids=query.pids.numpy(),
            q_camids=query.camids.numpy(),
            g_features=gallery.features.numpy(),
            g_pids=gallery.pids.numpy(),
            g_camids=gallery.camids.numpy(),
        )


def save_verification_figure(path: Path, verification: Verification, result: dict[str, Any]) -> None:
    """`verification.png`: the pair distance histograms and the threshold."""
    figure = verification_histograms(verification, title(result))
    with atomic_file(path) as file:
        figure.savefig(file, format="png")


def summary(metrics: dict[str, float]) -> dict[str, float | int]:
    """The reported subset of a `TrackletRankEvaluator` result: mAP, CMC ranks, valid queries (an int)."""
    return {**{key: metrics[key] for key in METRIC_KEYS}, "num_valid_query": int(metrics["num_valid_query"])}


def title(result: dict[str, Any]) -> str:
    """ "Mars, official protocol", or the dataset's name alone when it has no protocol."""
    protocol = result.get("protocol")
    return result["dataset"] + (f", {protocol} protocol" if protocol else "")


def counts_line(result: dict[str, Any]) -> str:
    """How many queries were ranked against what."""
    if result["kind"] == UNSEEN_CLASSES:
        return (
            f"{result['num_images']} test images of {result['num_classes']} classes, each ranked against the "
            f"others ({result['num_query']} with another image of their class)."
        )
    return (
        f"{result['num_query']} queries ({result['num_valid_query']} with a true match), "
        f"{result['num_gallery']} gallery items (tracklets or images) ranked."
    )


def metrics_table(result: dict[str, Any]) -> Table:
    """The metrics in percent (the threshold as a distance), with a re-ranked column when there is one."""
    table = Table(title=title(result))
    table.add_column("metric")
    columns = [result] + ([result["reranked"]] if "reranked" in result else [])
    for header in ("%", "re-ranked %")[: len(columns)]:
        table.add_column(header, justify="right")
    keys = (
        METRIC_KEYS if result["kind"] == QUERY_GALLERY else [k for k in result if k.startswith("recall_at_")]
    )
    keys = [*keys, *(k for k in ("map_at_r", "r_precision", "nmi") if k in result)]
    keys += ["mAP"] if result["kind"] == UNSEEN_CLASSES else []
    for key in keys:
        table.add_row(key, *(f"{100 * c[key]:.2f}" for c in columns))
    for key in ("roc_auc", "tar_at_far_1e-2", "tar_at_far_1e-3"):
        table.add_row(key, f"{100 * result[key]:.2f}")
    table.add_row("threshold (distance)", f"{result['threshold']:.4g}")
    return table
