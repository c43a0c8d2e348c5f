"""Ranked-list pictures: a query tracklet and its nearest gallery tracklets, true matches framed green.

Each tracklet is shown by its middle frame. The list is the one the metrics rank: gallery tracklets the
protocol skips for this query (junk, and the query's own identity seen by the query's own camera) are left
out, so the picture shows what CMC and mAP count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reid.data.images import evenly_spaced
from reid.data.mars import Tracklet
from reid.files import atomic_file

TILE = (64, 128)  # width, height of a shown frame
BORDER = 4
GAP = 16  # between the query and its list
TEXT_HEIGHT = 14
QUERY_COLOUR, MATCH_COLOUR, MISMATCH_COLOUR = (70, 110, 220), (30, 170, 60), (220, 40, 40)


def ranked_gallery(
    distances: np.ndarray, query: Tracklet, gallery: Sequence[Tracklet], g_junk: np.ndarray, top_k: int
) -> np.ndarray:
    """Indices of the `top_k` nearest gallery tracklets (of distances (G,)) that take part in the ranking.

    Ties keep gallery order (a stable sort), as in `reid.retrieval.ranking.rank_metrics`.
    """
    g_pids = np.array([t.pid for t in gallery])
    g_camids = np.array([t.camid for t in gallery])
    ranked = ~g_junk & ~((g_pids == query.pid) & (g_camids == query.camid))
    candidates = np.flatnonzero(ranked)
    return candidates[np.argsort(distances[candidates], kind="stable")[:top_k]]


def ranked_list_image(query: Tracklet, shown: Sequence[Tracklet]) -> Image.Image:
    """One row: the query's frame (blue border), a gap, then each shown tracklet's frame, bordered green when
    it has the query's identity and red otherwise, each captioned with rank, pid and camera (1-based)."""
    step = TILE[0] + 2 * BORDER
    width = step * (1 + len(shown)) + GAP
    canvas = Image.new("RGB", (width, TILE[1] + 2 * BORDER + TEXT_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    _paste(canvas, draw, 0, query, QUERY_COLOUR, "q")
    for rank, tracklet in enumerate(shown, start=1):
        colour = MATCH_COLOUR if tracklet.pid == query.pid else MISMATCH_COLOUR
        _paste(canvas, draw, step * rank + GAP, tracklet, colour, f"#{rank}")
    return canvas


def _paste(canvas: Image.Image, draw: ImageDraw.ImageDraw, x: int, tracklet: Tracklet, colour, label: str):
    """Draw a tracklet's middle frame with a coloured border at x, and `label pid camera` under it."""
    draw.rectangle([x, 0, x + TILE[0] + 2 * BORDER - 1, TILE[1] + 2 * BORDER - 1], fill=colour)
    with Image.open(tracklet.paths[len(tracklet.paths) // 2]) as frame:
        canvas.paste(frame.convert("RGB").resize(TILE, Image.Resampling.BILINEAR), (x + BORDER, BORDER))
    caption = f"{label} {tracklet.pid} c{tracklet.camid + 1}"
    draw.text((x + 1, TILE[1] + 2 * BORDER + 1), caption, fill="black")


def save_ranked_lists(
    out_dir: Path,
    distmat: np.ndarray,
    query: Sequence[Tracklet],
    gallery: Sequence[Tracklet],
    g_junk: np.ndarray,
    n_show: int,
    top_k: int = 10,
) -> list[Path]:
    """Write `<out_dir>/query_NNNN_pidP.png` for `n_show` evenly spaced queries; returns the paths.

    Args:
        distmat: (Q, G) distances between the query and gallery tracklets, in the order of the lists.
        g_junk: (G,) bool, gallery tracklets the protocol skips for every query.
    """
    paths = []
    for q in evenly_spaced(len(query), n_show).tolist():
        shown = ranked_gallery(distmat[q], query[q], gallery, g_junk, top_k)
        path = out_dir / f"query_{q:04d}_pid{query[q].pid:04d}.png"
        with atomic_file(path) as file:
            ranked_list_image(query[q], [gallery[g] for g in shown]).save(file, format="PNG")
        paths.append(path)
    return paths
