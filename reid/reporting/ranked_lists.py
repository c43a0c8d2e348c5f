"""Ranked lists: each query's nearest gallery items with their distances and whether they match, as
records (for reports) and as pictures (a row of images, true matches framed green).

Two kinds of list, one record format (`QueryRecord`):

- query/gallery (MARS, Market-1501): a query tracklet against the gallery tracklets, each shown by its
  middle frame. The list is the one the metrics rank: gallery tracklets the protocol skips for this query
  (junk, and the query's own identity seen by the query's own camera) are left out, so the picture shows
  what CMC and mAP count.
- leave-one-out (unseen classes): a test image against all the other test images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reid.data.images import evenly_spaced
from reid.data.mars import Tracklet
from reid.files import atomic_file
from reid.retrieval.neighbours import stable_top_k
from reid.retrieval.unseen_classes import LeaveOneOut

TILE = (64, 128)  # width, height of a shown image
BORDER = 4
GAP = 16  # between the query and its list
TEXT_HEIGHT = 14
QUERY_COLOUR, MATCH_COLOUR, MISMATCH_COLOUR = (70, 110, 220), (30, 170, 60), (220, 40, 40)


@dataclass(frozen=True)
class RankedItem:
    """One place of a ranked list: the image shown, its label (pid or class; None when unknown), camera
    (None without one), distance to the query, and whether it has the query's label (None when unknown)."""

    path: str
    label: int | None
    camid: int | None
    distance: float
    correct: bool | None


@dataclass(frozen=True)
class QueryRecord:
    """A query and its ranked list.

    index: the query's place in the query list (the test list for leave-one-out).
    path, label, camid: the image shown for the query (a tracklet's middle frame), its pid or class, and
        its camera (None for unseen-class data).
    ap: the query's average precision as the metrics count it: step or trapezoid AP by the protocol for
        query/gallery data, AP@R for unseen classes; None when the query has no true match.
    ranked: its `top_k` nearest items, nearest first (ties in list order).
    """

    index: int
    path: str
    label: int | None
    camid: int | None
    ap: float | None
    ranked: tuple[RankedItem, ...]


def worst_first(records: Sequence[QueryRecord]) -> list[QueryRecord]:
    """Records worst first: known APs lowest first; then queries whose first true match in the shown list
    comes latest (none: last of all); then queries without any known correctness; ties in index order."""

    def key(record: QueryRecord) -> tuple:
        if record.ap is not None and not math.isnan(record.ap):
            return (0, record.ap, record.index)
        known = [item.correct for item in record.ranked if item.correct is not None]
        if known:
            first = next((rank for rank, correct in enumerate(known) if correct), len(known))
            return (1, -first, record.index)
        return (2, 0, record.index)

    return sorted(records, key=key)


def middle_frame(tracklet: Tracklet) -> str:
    """The frame that shows a tracklet."""
    return tracklet.paths[len(tracklet.paths) // 2]


def query_gallery_records(
    distmat: np.ndarray,
    query: Sequence[Tracklet],
    gallery: Sequence[Tracklet],
    g_junk: np.ndarray,
    aps: np.ndarray,
    top_k: int = 10,
) -> list[QueryRecord]:
    """Every query's record, worst AP first (`worst_first`).

    Args:
        distmat: (Q, G) distances between the query and gallery tracklets, in the order of the lists.
        g_junk: (G,) bool, gallery tracklets the protocol skips for every query.
        aps: (Q,) each query's AP, NaN without a true match
            (`reid.retrieval.ranking.RankMetrics.query_ap`).
    """
    g_pids = np.array([t.pid for t in gallery])
    g_camids = np.array([t.camid for t in gallery])
    records = []
    for start in range(0, len(query), 256):
        rows = range(start, min(start + 256, len(query)))
        q_pids = np.array([query[q].pid for q in rows])
        q_camids = np.array([query[q].camid for q in rows])
        skipped = g_junk[None] | ((g_pids == q_pids[:, None]) & (g_camids == q_camids[:, None]))
        dist = np.where(skipped, np.inf, np.asarray(distmat[start : rows.stop], dtype=np.float32))
        nearest = stable_top_k(dist, top_k)
        for row, q in enumerate(rows):
            shown = [g for g in nearest[row] if not skipped[row, g]]
            items = tuple(
                RankedItem(
                    middle_frame(gallery[g]),
                    int(g_pids[g]),
                    int(g_camids[g]),
                    float(dist[row, g]),
                    bool(g_pids[g] == q_pids[row]),
                )
                for g in shown
            )
            ap = None if np.isnan(aps[q]) else float(aps[q])
            records.append(QueryRecord(q, middle_frame(query[q]), query[q].pid, query[q].camid, ap, items))
    return worst_first(records)


def leave_one_out_records(
    ranked: LeaveOneOut, paths: Sequence[str], labels: np.ndarray, top_k: int = 10
) -> list[QueryRecord]:
    """Every test image's record against the other test images, worst AP@R first (`worst_first`); the
    lists are the first `top_k` of `ranked.neighbours` (`reid.retrieval.unseen_classes.leave_one_out` of
    the same images)."""
    labels = np.asarray(labels)
    records = []
    lists = zip(ranked.neighbours[:, :top_k], ranked.distances[:, :top_k], strict=True)
    for q, (neighbours, distances) in enumerate(lists):
        items = tuple(
            RankedItem(paths[n], int(labels[n]), None, float(d), bool(labels[n] == labels[q]))
            for n, d in zip(neighbours, distances, strict=True)
        )
        ap = None if np.isnan(ranked.ap_at_r[q]) else float(ranked.ap_at_r[q])
        records.append(QueryRecord(q, paths[q], int(labels[q]), None, ap, items))
    return worst_first(records)


def ranked_list_image(record: QueryRecord) -> Image.Image:
    """One row: the query's image (blue border), a gap, then each ranked item's image, bordered green when
    it has the query's label and red otherwise, each captioned with rank, label and camera (1-based)."""
    step = TILE[0] + 2 * BORDER
    width = step * (1 + len(record.ranked)) + GAP
    canvas = Image.new("RGB", (width, TILE[1] + 2 * BORDER + TEXT_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    _paste(canvas, draw, 0, record.path, _caption("q", record.label, record.camid), QUERY_COLOUR)
    for rank, item in enumerate(record.ranked, start=1):
        colour = MATCH_COLOUR if item.correct else MISMATCH_COLOUR
        _paste(
            canvas, draw, step * rank + GAP, item.path, _caption(f"#{rank}", item.label, item.camid), colour
        )
    return canvas


def _caption(place: str, label: int | None, camid: int | None) -> str:
    """ "#3: 12 c2" (rank, label, 1-based camera); the colon keeps rank and label apart in a small font."""
    return f"{place}: {'?' if label is None else label}" + ("" if camid is None else f" c{camid + 1}")


def _paste(canvas: Image.Image, draw: ImageDraw.ImageDraw, x: int, path: str, caption: str, colour) -> None:
    """Draw the image at `path` with a coloured border at x, and its caption under it."""
    draw.rectangle([x, 0, x + TILE[0] + 2 * BORDER - 1, TILE[1] + 2 * BORDER - 1], fill=colour)
    with Image.open(path) as image:
        canvas.paste(image.convert("RGB").resize(TILE, Image.Resampling.BILINEAR), (x + BORDER, BORDER))
    draw.text((x + 1, TILE[1] + 2 * BORDER + 1), caption, fill="black")


def save_ranked_lists(out_dir: Path, records: Sequence[QueryRecord], n_show: int) -> list[Path]:
    """Write `<out_dir>/query_NNNN_pidP.png` (`..._labelL.png` without cameras) for `n_show` queries evenly
    spaced in query order; returns the paths."""
    by_index = sorted(records, key=lambda r: r.index)
    paths = []
    for chosen in evenly_spaced(len(by_index), n_show).tolist():
        record = by_index[chosen]
        name = "pid" if record.camid is not None else "label"
        path = out_dir / f"query_{record.index:04d}_{name}{record.label:04d}.png"
        with atomic_file(path) as file:
            ranked_list_image(record).save(file, format="PNG")
        paths.append(path)
    return paths
