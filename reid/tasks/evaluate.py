"""Evaluate a trained checkpoint on the MARS test split: tracklet CMC and mAP, re-ranking, ranked lists.

`python evaluate.py ckpt_path=<file>.ckpt dataset.root=... [rerank=true]` rebuilds the model from the
checkpoint's model card (the checkpoint alone is enough), feeds it frames of the size it was trained on,
and writes, in its own run folder, `metrics.json` (the protocol, mAP, rank1/5/10/20 and the query and
gallery counts, the same under `reranked` with re-ranking), `features.npz` (tracklet features, pids and
camids of query and gallery) and `rankings/*.png` (ranked lists of `n_show` queries).
"""

from __future__ import annotations

import json
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
from reid.reporting.ranked_lists import save_ranked_lists
from reid.retrieval.distances import euclidean_distances
from reid.retrieval.evaluators import Tracklets, ValidationSet
from reid.retrieval.rerank import re_ranking
from reid.training.checkpoints import load_model

METRIC_KEYS = ("mAP", "rank1", "rank5", "rank10", "rank20")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `cfg.ckpt_path` as configured; returns what `metrics.json` holds."""
    output_dir = Path(cfg.paths.output_dir)
    print(f"Run folder: {output_dir}")
    if not cfg.ckpt_path:
        raise ConfigError(
            "evaluate.py needs ckpt_path=<run>/checkpoints/<file>.ckpt, a checkpoint written by train.py."
        )
    backbone, card = load_model(cfg.ckpt_path, fallback_model=cfg.model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone = backbone.to(device)
    datamodule = instantiate(cfg.dataset, **input_size(card, cfg.ckpt_path))
    datamodule.setup("test")
    query_frames, gallery_frames = (
        embed_frames(backbone, loader, device, name)
        for loader, name in zip(datamodule.test_dataloader(), ("query", "gallery"), strict=True)
    )
    evaluator = instantiate(cfg.evaluator)
    query, gallery = evaluator.pool(query_frames), evaluator.pool(gallery_frames)
    distmat = euclidean_distances(query.features, gallery.features).numpy()
    g_junk = evaluator.junk_mask(gallery.pids.numpy())
    result = {
        "protocol": datamodule.protocol,
        "num_query": len(query.pids),
        "num_gallery": int(np.count_nonzero(~g_junk)),
        **summary(evaluator.rank(query, gallery, distmat)),
    }
    if cfg.rerank:
        q_q = euclidean_distances(query.features, query.features).numpy()
        g_g = euclidean_distances(gallery.features, gallery.features).numpy()
        reranked = re_ranking(distmat, q_q, g_g, **cfg.reranking)
        result["reranked"] = summary(evaluator.rank(query, gallery, reranked))
    write_text(output_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    save_features(output_dir / "features.npz", query, gallery)
    save_ranked_lists(
        output_dir / "rankings",
        distmat,
        datamodule.splits.query,
        datamodule.splits.gallery,
        g_junk,
        cfg.n_show,
    )
    Console().print(metrics_table(result))
    print(
        f"{result['num_query']} queries ({result['num_valid_query']} with a true match), "
        f"{result['num_gallery']} gallery tracklets ranked.\nRun folder: {output_dir}"
    )
    return result


def input_size(card: dict, path: str, data_channels: int = 3) -> dict[str, int]:
    """The (height, width) to feed the checkpoint's backbone, as datamodule arguments; stops clearly when
    the backbone was trained on images of another number of channels than the data has."""
    if card["channels"] is not None and card["channels"] != data_channels:
        trained_on = (card.get("train_config") or {}).get("dataset", {}).get("_target_", "other data")
        raise ConfigError(
            f"The checkpoint '{path}' was trained on {card['channels']}-channel images ({trained_on}), but "
            f"evaluate.py ranks {data_channels}-channel MARS frames. Pass a checkpoint of a model trained on "
            "MARS (e.g. experiment=mars_smoke or mars_seed)."
        )
    if card["input_size"] is None:
        return {}
    height, width = card["input_size"]
    return {"height": height, "width": width}


def embed_frames(backbone: nn.Module, loader: DataLoader, device: torch.device, name: str) -> ValidationSet:
    """Embeddings (N, D) float32 on the CPU of every frame of an (images, pids, camids, tracklet_ids) loader.

    Runs under `torch.inference_mode`, with bf16 autocast on a GPU.
    """
    embeddings, fields = [], []
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        for images, *rest in track(loader, f"Embedding {name} frames"):
            embeddings.append(backbone(to_unit_float(images.to(device, non_blocking=True))).float().cpu())
            fields.append(rest)
    return ValidationSet(
        torch.cat(embeddings), tuple(torch.cat(column) for column in zip(*fields, strict=True))
    )


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


def summary(metrics: dict[str, float]) -> dict[str, float | int]:
    """The reported subset of a `TrackletRankEvaluator` result: mAP, CMC ranks, valid queries (an int)."""
    return {**{key: metrics[key] for key in METRIC_KEYS}, "num_valid_query": int(metrics["num_valid_query"])}


def metrics_table(result: dict[str, Any]) -> Table:
    """mAP and CMC in percent, with a re-ranked column when there is one."""
    table = Table(title=f"MARS, {result['protocol']} protocol")
    table.add_column("metric")
    columns = [result] + ([result["reranked"]] if "reranked" in result else [])
    for header in ("%", "re-ranked %")[: len(columns)]:
        table.add_column(header, justify="right")
    for key in METRIC_KEYS:
        table.add_row(key, *(f"{100 * c[key]:.2f}" for c in columns))
    return table
