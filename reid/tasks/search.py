"""Search a gallery's features for queries: top-k matches as CSV and JSON, metrics, an HTML report.

`python search.py query=<features.npz | image folder | CSV list> gallery=<features.npz>` writes, in its
own run folder, `matches.csv` and `matches.json` (the `top_k` nearest gallery items of each query, with
`match` when a `threshold` is given and labels and `correct` where both sides have them),
`metrics.json` when every query and gallery item is labelled (CMC and mAP over the whole gallery),
`distances.png` and `report.html` (`reid.reporting.html_report`). Search is exact (`index=exact`,
`reid.retrieval.search`) or approximate (`index=faiss`, `reid.retrieval.faiss_index`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from reid.data.image_files import is_image_file
from reid.errors import ConfigError
from reid.files import atomic_file, write_text
from reid.inference.features import ImageList, list_input
from reid.inference.model import load_model
from reid.reporting.figures import distance_histogram
from reid.reporting.html_report import (
    CORRECT_COLOUR,
    UNKNOWN_COLOUR,
    WRONG_COLOUR,
    write_report,
)
from reid.reporting.ranked_lists import QueryRecord, RankedItem
from reid.retrieval.faiss_index import faiss_search, load_or_build_index
from reid.retrieval.feature_files import UNKNOWN, FeatureSet, check_same_dim, read_features
from reid.retrieval.ranking import feature_rank_metrics
from reid.retrieval.search import Neighbours, exact_search

INDEXES = ("exact", "faiss")
OUTPUT_FILES = ("matches.csv", "matches.json", "metrics.json", "report.html")
CMC_RANKS = (1, 5, 10, 20)
MAX_RANK = 50  # length of the CMC curve in the report
METRICS_BLOCK = 1 << 24  # distances per query chunk of the metrics pass (64 MB)


def search(cfg: DictConfig) -> dict[str, Any]:
    """Search as configured; returns what `metrics.json` holds ({} without labels)."""
    output_dir = Path(cfg.paths.output_dir)
    print(f"Run folder: {output_dir}")
    check_output_dir(output_dir)
    if cfg.index not in INDEXES:
        raise ConfigError(f"index={cfg.index} is not a search: use index=exact or index=faiss.")
    if not cfg.gallery or not cfg.query:
        raise ConfigError(
            "search.py needs query=<features .npz, image folder or CSV list> and gallery=<features .npz> "
            "(feature files are written by embed.py)."
        )
    gallery = read_features(cfg.gallery)
    query = read_queries(cfg)
    check_same_dim(query, str(cfg.query), gallery, str(cfg.gallery))
    neighbours = find_neighbours(cfg, query, gallery)
    rows = match_rows(query, gallery, neighbours, cfg.threshold)
    write_matches(output_dir, rows, cfg)
    result, query_ap, cmc = {}, None, None
    if query.labelled and gallery.labelled:
        result, query_ap, cmc = rank_summary(query, gallery)
        write_text(output_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
        Console().print(metrics_table(result))
    figure = save_distance_histogram(output_dir / "distances.png", rows, cfg.top_k)
    counts = {"num_query": len(query.features), "num_gallery": len(gallery.features)}
    settings = {"index": cfg.index, "top_k": cfg.top_k, "threshold": cfg.threshold}
    report = write_report(
        output_dir,
        f"Search of {Path(cfg.query).name} in {Path(cfg.gallery).name}",
        {**(result or counts), **settings},
        query_results(query, rows, query_ap),
        cmc=cmc,
        figures={"Distances": figure},
        n_show=cfg.report_queries,
    )
    print(f"{len(query.features)} queries searched in {len(gallery.features)} gallery items ({cfg.index}).")
    print(f"Matches: {output_dir / 'matches.csv'}\nReport: {report}")
    return result


def check_output_dir(folder: Path) -> None:
    """Stops when `folder` holds an earlier search's outputs (a folder passed with hydra.run.dir)."""
    found = [name for name in OUTPUT_FILES if (folder / name).exists()]
    if found:
        raise ConfigError(
            f"'{folder}' already holds the outputs of a search ({', '.join(found)}), which this one would "
            "overwrite. Leave out hydra.run.dir (every search gets a new dated folder) or pass a new folder."
        )


def read_queries(cfg: DictConfig) -> FeatureSet:
    """The query features: a feature file as it is, or images (one image, a folder read as embed.py reads
    it, or a CSV list) embedded with `cfg.ckpt_path`."""
    source = Path(cfg.query)
    if source.suffix == ".npz":
        return read_features(source)
    if source.is_file() and is_image_file(source):
        unknown = np.array([UNKNOWN], dtype=np.int64)
        images = ImageList([str(source.resolve())], unknown, unknown.copy())
    else:
        images = list_input(source, key="query")
    if not cfg.ckpt_path:
        raise ConfigError(
            "Searching with images needs the model that embedded the gallery: pass "
            "ckpt_path=<run>/checkpoints/<file>.ckpt, or a query feature file written by embed.py."
        )
    features = load_model(cfg.ckpt_path).embed(images.paths).float().cpu().numpy()
    return FeatureSet(
        features, np.asarray(images.paths), images.labels, images.camids, {"checkpoint": str(cfg.ckpt_path)}
    )


def find_neighbours(cfg: DictConfig, query: FeatureSet, gallery: FeatureSet) -> Neighbours:
    """The `cfg.top_k` nearest gallery items of each query, by the configured index."""
    if cfg.index == "faiss":
        index, nprobe = load_or_build_index(cfg.gallery, gallery.features)
        return faiss_search(index, cfg.nprobe or nprobe, query.features, gallery.features, cfg.top_k)
    return exact_search(
        query.features, gallery.features, cfg.top_k, cfg.chunk_size, cfg.query_batch, progress=True
    )


def match_rows(
    query: FeatureSet, gallery: FeatureSet, neighbours: Neighbours, threshold: float | None
) -> list[dict[str, Any]]:
    """One dict per (query, rank): the columns of `matches.csv`. Label columns appear when both sides have
    labels; `correct` is empty where either label is unknown."""
    with_labels = bool(np.any(query.labels != UNKNOWN) and np.any(gallery.labels != UNKNOWN))
    rows = []
    for q, (distances, indices) in enumerate(zip(neighbours.distances, neighbours.indices, strict=True)):
        for rank, (distance, g) in enumerate(zip(distances.tolist(), indices.tolist(), strict=True), start=1):
            row = {"query_path": query.paths[q], "rank": rank, "gallery_path": gallery.paths[g]}
            row["distance"] = distance
            if threshold is not None:
                row["match"] = distance <= threshold
            if with_labels:
                q_label, g_label = int(query.labels[q]), int(gallery.labels[g])
                known = UNKNOWN not in (q_label, g_label)
                row |= {"query_label": _label(q_label), "gallery_label": _label(g_label)}
                row["correct"] = q_label == g_label if known else None
            rows.append(row)
    return rows


def write_matches(output_dir: Path, rows: list[dict[str, Any]], cfg: DictConfig) -> None:
    """`matches.csv` (a row per match) and `matches.json` (the search's settings and the same rows)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    write_text(output_dir / "matches.csv", buffer.getvalue())
    settings = {
        "query": str(cfg.query),
        "gallery": str(cfg.gallery),
        "index": cfg.index,
        "top_k": cfg.top_k,
        "threshold": cfg.threshold,
    }
    write_text(output_dir / "matches.json", json.dumps({**settings, "matches": rows}, indent=1) + "\n")


def save_distance_histogram(path: Path, rows: list[dict[str, Any]], top_k: int) -> Path:
    """The histogram of the matches' distances, true and false matches apart, as a PNG at `path`."""
    groups = {
        "true matches": [r["distance"] for r in rows if r.get("correct") is True],
        "false matches": [r["distance"] for r in rows if r.get("correct") is False],
        "label unknown": [r["distance"] for r in rows if r.get("correct") is None],
    }
    arrays = {name: np.asarray(values) for name, values in groups.items()}
    colours = dict(zip(groups, (CORRECT_COLOUR, WRONG_COLOUR, UNKNOWN_COLOUR), strict=True))
    with atomic_file(path) as file:
        distance_histogram(arrays, f"Distances of the top {top_k} matches", colours).savefig(
            file, format="png"
        )
    return path


def rank_summary(query: FeatureSet, gallery: FeatureSet) -> tuple[dict[str, Any], np.ndarray, list[float]]:
    """CMC and mAP over the whole gallery (an exact pass), each query's AP and the CMC curve.

    A gallery item with the query's label and camera is left out when both sides know their cameras (the
    re-ID protocol); without cameras every item counts.
    """
    cameras = bool(np.all(query.camids != UNKNOWN) and np.all(gallery.camids != UNKNOWN))
    q_camids = query.camids if cameras else np.zeros(len(query.camids), dtype=np.int64)
    g_camids = gallery.camids if cameras else np.ones(len(gallery.camids), dtype=np.int64)
    chunk_size = max(1, min(256, METRICS_BLOCK // len(gallery.features)))
    ranked = feature_rank_metrics(
        query.features,
        gallery.features,
        query.labels,
        gallery.labels,
        q_camids,
        g_camids,
        max_rank=min(MAX_RANK, len(gallery.features)),
        chunk_size=chunk_size,
    )
    result = {
        "num_query": len(query.features),
        "num_gallery": len(gallery.features),
        "num_valid_query": ranked.num_valid_query,
        "camera_filter": cameras,
        "mAP": ranked.mAP,
        **{f"rank{r}": float(ranked.cmc[min(r, len(ranked.cmc)) - 1]) for r in CMC_RANKS},
    }
    return result, ranked.query_ap, ranked.cmc.tolist()


def query_results(
    query: FeatureSet, rows: list[dict[str, Any]], query_ap: np.ndarray | None
) -> list[QueryRecord]:
    """The report's view of each query: its label, AP and ranked matches (`rows` holds k per query, in
    query order)."""
    k = len(rows) // len(query.features)
    return [
        QueryRecord(
            q,
            path,
            _label(label),
            None,
            None if query_ap is None else float(query_ap[q]),
            tuple(
                RankedItem(r["gallery_path"], r.get("gallery_label"), None, r["distance"], r.get("correct"))
                for r in rows[q * k : (q + 1) * k]
            ),
        )
        for q, (path, label) in enumerate(zip(query.paths.tolist(), query.labels.tolist(), strict=True))
    ]


def metrics_table(result: dict[str, Any]) -> Table:
    """mAP and CMC in percent."""
    table = Table(title=f"{result['num_valid_query']} of {result['num_query']} queries with a true match")
    table.add_column("metric")
    table.add_column("%", justify="right")
    for key in ("mAP", *(f"rank{r}" for r in CMC_RANKS)):
        table.add_row(key, f"{100 * result[key]:.2f}")
    return table


def _label(label: int) -> int | None:
    return None if label == UNKNOWN else label
