"""The HTML report: its order and contents as written, then as a real headless browser (Debian's
`chromium`) renders it from disk: every image loads, the counts on the page are those of metrics.json, and
the screenshot is not blank."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid.reporting.html_report import Match, QueryResult, flat_metrics, write_report
from reid.tasks.search import search
from tests.helpers.search_files import compose_search, write_feature_file

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no `chromium` on PATH: apt-get install -y chromium (.ci/run installs it)"
)


def image(path: Path, colour: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 40), colour).save(path)
    return str(path)


def test_the_report_shows_the_worst_queries_first_from_its_own_files(tmp_path):
    pictures = [image(tmp_path / "in" / f"{i}.jpg", (40 * i, 90, 200 - 30 * i)) for i in range(5)]
    queries = [
        QueryResult(pictures[0], 1, 0.9, [Match(pictures[1], 0.5, True), Match(pictures[2], 0.7, False)]),
        QueryResult(pictures[3], 2, 0.2, [Match(pictures[2], 0.4, False), Match(pictures[4], 0.6, True)]),
        QueryResult(pictures[4], 3, None, [Match(pictures[1], 0.3, False), Match("gone.jpg", 0.8, False)]),
        QueryResult(pictures[2], None, None, [Match(pictures[0], 0.1, None)]),
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


def browse(page: Path, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@needs_chromium
def test_a_browser_renders_the_search_report_with_every_image_and_the_metrics(tmp_path):
    rng = np.random.default_rng(4)
    query_file = write_feature_file(tmp_path, "query", 8, rng)
    gallery_file = write_feature_file(tmp_path, "gallery", 25, rng)
    out = tmp_path / "run"
    search(compose_search(out, f"query={query_file}", f"gallery={gallery_file}", "top_k=5"))
    page = out / "report.html"

    dom = browse(page, "--dump-dom").stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    loaded = re.search(r'data-images-loaded="(\d+)"', body).group(1)
    total = re.search(r'data-images-total="(\d+)"', body).group(1)
    assert int(total) == 1 + 8 * 6 and loaded == total  # the histogram and 8 rows of 1 + 5 thumbnails
    on_page = dict(re.findall(r'data-metric="([^"]+)">([^<]*)<', dom))
    metrics = json.loads((out / "metrics.json").read_text())
    for key, value in flat_metrics(metrics).items():
        assert on_page[key] == (f"{value:.4f}" if isinstance(value, float) else str(value)), key
    assert re.search(r'id="num-queries">(\d+)<', dom).group(1) == str(metrics["num_query"])

    screenshot = tmp_path / "report.png"
    browse(page, f"--screenshot={screenshot}", "--window-size=1000,1400")
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float32)
    assert pixels.std() > 20  # not a blank page
    green = (pixels[..., 1] > 140) & (pixels[..., 0] < 80) & (pixels[..., 2] < 100)
    assert green.sum() > 100  # the frames of true matches are drawn
