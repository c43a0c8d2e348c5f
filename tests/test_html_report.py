"""The HTML report: its order and contents as written, then as a real headless browser (Debian's
`chromium`) renders it from disk: every image loads, the counts on the page are those of metrics.json, and
the screenshot is not blank."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid.reporting.html_report import write_report
from reid.reporting.ranked_lists import QueryRecord, RankedItem
from reid.tasks.search import search
from tests.helpers.browser import check_rendered_report, needs_chromium
from tests.helpers.search_files import compose_search, write_feature_file


def image(path: Path, colour: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 40), colour).save(path)
    return str(path)


def test_the_report_shows_the_worst_queries_first_from_its_own_files(tmp_path):
    pictures = [image(tmp_path / "in" / f"{i}.jpg", (40 * i, 90, 200 - 30 * i)) for i in range(5)]
    def query(index, path, label, ap, *ranked):
        items = tuple(RankedItem(p, None, None, distance, correct) for p, distance, correct in ranked)
        return QueryRecord(index, path, label, None, ap, items)

    queries = [
        query(0, pictures[0], 1, 0.9, (pictures[1], 0.5, True), (pictures[2], 0.7, False)),
        query(1, pictures[3], 2, 0.2, (pictures[2], 0.4, False), (pictures[4], 0.6, True)),
        query(2, pictures[4], 3, None, (pictures[1], 0.3, False), ("gone.jpg", 0.8, False)),
        query(3, pictures[2], None, None, (pictures[0], 0.1, None)),
    ]
    metrics = {"num_query": 4, "mAP": 0.55, "reranked": {"mAP": 0.6}}
    page = write_report(
        tmp_path / "report", "Test", metrics, queries, cmc=[0.5, 0.75, 1.0], n_show=3
    ).read_text()

    shown = re.findall(r'<div class="query" title="([^"]+)"', page)
    assert shown == [pictures[3], pictures[0], pictures[4]]  # AP 0.2, AP 0.9, no true match; 3 of 4
    assert '<span id="num-shown">3</span>' in page and '<span id="num-queries">4</span>' in page
    assert 'data-metric="reranked.mAP">0.6000<' in page and "<polyline" in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 8 and len(set(sources)) == 5  # each picture written once; "gone.jpg" is not
    assert page.count("no image") == 1
    for source in sources:
        with Image.open(tmp_path / "report" / source) as thumbnail:
            assert thumbnail.size == (64, 128) and thumbnail.format == "JPEG"
    assert "http" not in page and "//" not in page.replace("<!DOCTYPE", "")


@pytest.mark.slow
@needs_chromium
def test_a_browser_renders_the_search_report_with_every_image_and_the_metrics(tmp_path):
    rng = np.random.default_rng(4)
    query_file = write_feature_file(tmp_path, "query", 8, rng)
    gallery_file = write_feature_file(tmp_path, "gallery", 25, rng)
    out = tmp_path / "run"
    search(compose_search(out, f"query={query_file}", f"gallery={gallery_file}", "top_k=5"))
    dom, pixels = check_rendered_report(out / "report.html", out / "metrics.json", tmp_path / "report.png")
    total = re.search(r'data-images-total="(\d+)"', dom).group(1)
    assert int(total) == 1 + 8 * 6  # the histogram and 8 rows of 1 + 5 thumbnails
    green = (pixels[..., 1] > 140) & (pixels[..., 0] < 80) & (pixels[..., 2] < 100)
    assert green.sum() > 100  # the frames of true matches are drawn
