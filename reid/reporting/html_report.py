"""A retrieval report as one folder that opens from disk: `report.html` and its `report_files/`.

The page shows the metrics, the CMC curve (inline SVG), figures (e.g. distance histograms, copied into
`report_files/`) and the ranked lists of the worst `n_show` queries: lowest AP first, or, where AP is not
known, the latest first true match first. Each image is a small JPEG thumbnail in `report_files/`, framed
green or red when its correctness is known. Nothing is fetched from elsewhere (no fonts, styles or
scripts by URL), and a few lines of inline script record, once the page has loaded, how many images
loaded (`<body data-images-loaded="..." data-images-total="...">`), for a headless browser to check. Each
metric sits in an element with `data-metric="<key>"` (nested keys joined by "."), and the counts of
queries in `#num-queries` and `#num-shown`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from reid.data.image_files import decode_image
from reid.files import atomic_file, write_text
from reid.reporting.ranked_lists import QueryRecord, worst_first

REPORT_FILE, FILES_FOLDER = "report.html", "report_files"
CORRECT_COLOUR, WRONG_COLOUR, UNKNOWN_COLOUR, QUERY_COLOUR = "#1eaa3c", "#dc2828", "#b4b4b4", "#466edc"
CMC_SIZE = (480, 240)  # width, height of the plot area in pixels
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table.metrics td, table.metrics th { padding: 0.2em 0.8em; text-align: right; border-bottom: 1px solid #ddd; }
.query { display: flex; align-items: flex-start; gap: 4px; margin: 0.6em 0; }
.tile { display: flex; flex-direction: column; align-items: center; font-size: 11px; width: 74px; }
.tile img, .tile .missing { border: 4px solid; width: 64px; height: 128px; object-fit: cover; }
.tile .missing { display: flex; align-items: center; justify-content: center; background: #eee; }
.gap { width: 16px; }
.caption { overflow-wrap: anywhere; text-align: center; }
"""
LOAD_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) loaded++;
  }
  document.body.dataset.imagesLoaded = loaded;
  document.body.dataset.imagesTotal = images.length;
});
"""


def write_report(
    folder: str | Path,
    title: str,
    metrics: dict[str, Any],
    queries: Sequence[QueryRecord],
    cmc: Sequence[float] | None = None,
    figures: dict[str, Path] | None = None,
    n_show: int = 50,
    thumbnail_size: tuple[int, int] = (64, 128),
) -> Path:
    """Writes `<folder>/report.html` and `<folder>/report_files/`; returns the page's path.

    Args:
        metrics: shown as a table; nested dicts (e.g. "reranked") as `outer.inner` rows.
        queries: every query's ranked list; the worst `n_show` are shown (`worst_first`).
        cmc: CMC curve, cmc[k] the fraction of queries with a true match within the first k + 1.
        figures: caption -> PNG file, copied into the report.
        thumbnail_size: (width, height) of the thumbnails.
    """
    folder = Path(folder)
    thumbnails = _Thumbnails(folder, thumbnail_size)
    shown = worst_first(queries)[:n_show]
    parts = [
        f"<h1>{_text(title)}</h1>",
        _metrics_table(metrics),
        f"<h2>CMC</h2>{cmc_svg(cmc)}" if cmc is not None and len(cmc) else "",
        *(
            _figure(folder, n, caption, Path(path))
            for n, (caption, path) in enumerate((figures or {}).items())
        ),
        "<h2>Ranked lists</h2>",
        f'<p>The <span id="num-shown">{len(shown)}</span> worst of <span id="num-queries">{len(queries)}'
        "</span> queries (lowest AP first; without AP, those whose first true match comes latest), each "
        "followed by its nearest gallery items and their distances. Frames: blue the query, green a true "
        "match, red a false one, grey unknown.</p>",
        *(_query_row(query, thumbnails) for query in shown),
    ]
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
        f"<style>{STYLE}</style><script>{LOAD_SCRIPT}</script></head>\n<body>\n"
        + "\n".join(part for part in parts if part)
        + "\n</body></html>\n"
    )
    path = folder / REPORT_FILE
    write_text(path, page)
    return path


def cmc_svg(cmc: Sequence[float]) -> str:
    """The CMC curve as an inline SVG: rank (1..len) across, matching rate (0..1) up."""
    width, height = CMC_SIZE
    left, bottom, top, right = 40, 30, 10, 10
    w, h = width - left - right, height - top - bottom
    n = len(cmc)

    def x(rank: int) -> float:
        return left + (w * (rank - 1) / (n - 1) if n > 1 else w / 2)

    def y(value: float) -> float:
        return top + h * (1 - value)

    points = " ".join(f"{x(rank):.1f},{y(value):.1f}" for rank, value in enumerate(cmc, start=1))
    ticks = [1, *[r for r in (5, 10, 20, 50) if r < n], n] if n > 1 else [1]
    grid = "".join(
        f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
        f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{v:.1f}</text>'
        for v in (0, 0.2, 0.4, 0.6, 0.8, 1.0)
    ) + "".join(
        f'<text x="{x(r):.1f}" y="{top + h + 16}" text-anchor="middle" font-size="11">{r}</text>'
        for r in dict.fromkeys(ticks)
    )
    return (
        f'<svg id="cmc" width="{width}" height="{height}" role="img" aria-label="CMC curve">{grid}'
        f'<polyline fill="none" stroke="{QUERY_COLOUR}" stroke-width="2" points="{points}"/>'
        f'<text x="{left + w / 2}" y="{height - 2}" text-anchor="middle" font-size="11">rank</text></svg>'
    )


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts as one level, keys joined by "."."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat |= flat_metrics(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><th>{_text(key)}</th><td data-metric="{_text(key)}">{_text(_format(value))}</td></tr>'
        for key, value in flat_metrics(metrics).items()
    )
    return f'<h2>Metrics</h2><table class="metrics">{rows}</table>' if rows else ""


def _format(value: Any) -> str:
    """Exact integers and text; floats to 4 decimals."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _figure(folder: Path, number: int, caption: str, source: Path) -> str:
    """Copies the figure into the report's files; its heading and image."""
    target = folder / FILES_FOLDER / f"figure_{number}{source.suffix}"
    with atomic_file(target) as file:
        file.write(source.read_bytes())
    return f'<h2>{_text(caption)}</h2><img src="{FILES_FOLDER}/{target.name}" alt="{_text(caption)}">'


def _query_row(query: QueryRecord, thumbnails: _Thumbnails) -> str:
    label = "" if query.label is None else f" id {query.label}"
    ap = "" if query.ap is None or math.isnan(query.ap) else f" AP {query.ap:.3f}"
    tiles = [thumbnails.tile(query.path, QUERY_COLOUR, f"query{label}{ap}"), '<div class="gap"></div>']
    for rank, item in enumerate(query.ranked, start=1):
        colour = {True: CORRECT_COLOUR, False: WRONG_COLOUR, None: UNKNOWN_COLOUR}[item.correct]
        tiles.append(thumbnails.tile(item.path, colour, f"#{rank} {item.distance:.3f}"))
    return f'<div class="query" title="{_text(query.path)}">{"".join(tiles)}</div>'


class _Thumbnails:
    """Writes each image once as a JPEG thumbnail into the report's files and hands out its tile."""

    def __init__(self, folder: Path, size: tuple[int, int]):
        self.folder, self.size = folder / FILES_FOLDER, size
        self.names: dict[str, str | None] = {}

    def tile(self, path: str, colour: str, caption: str) -> str:
        name = self.names[path] if path in self.names else self._write(path)
        self.names[path] = name
        style = f'style="border-color: {colour}"'
        picture = (
            f'<img src="{FILES_FOLDER}/{name}" alt="{_text(Path(path).name)}" {style}>'
            if name
            else f'<div class="missing" {style}>no image</div>'
        )
        caption = f'<span class="caption">{_text(caption)}</span>'
        return f'<div class="tile" title="{_text(path)}">{picture}{caption}</div>'

    def _write(self, path: str) -> str | None:
        """The thumbnail's file name; None when `path` is not a readable image (e.g. features only)."""
        width, height = self.size
        try:
            pixels = decode_image(path, height, width)
        except OSError:
            return None
        name = f"thumb_{len(self.names):05d}.jpg"
        with atomic_file(self.folder / name) as file:
            Image.fromarray(pixels).save(file, format="JPEG", quality=85)
        return name


def _text(value: Any) -> str:
    return html.escape(str(value))
