"""A real headless browser (Debian's `chromium`) opening a report from disk, as a user would."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid.reporting.html_report import flat_metrics

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no `chromium` on PATH: apt-get install -y chromium (.ci/run installs it)"
)


def browse(page: Path, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def check_rendered_report(page: Path, metrics_file: Path, screenshot: Path) -> tuple[str, np.ndarray]:
    """Opens `page` in chromium: every image loaded, each metric of `metrics_file` shown as written, the
    query count equal to its `num_query`, and a screenshot that is not blank. Returns the DOM after load
    and the screenshot's pixels (H, W, 3) float32."""
    dom = browse(page, "--dump-dom").stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    loaded = re.search(r'data-images-loaded="(\d+)"', body).group(1)
    total = re.search(r'data-images-total="(\d+)"', body).group(1)
    assert int(total) > 0 and loaded == total, (loaded, total)
    on_page = dict(re.findall(r'data-metric="([^"]+)">([^<]*)<', dom))
    metrics = json.loads(metrics_file.read_text())
    for key, value in flat_metrics(metrics).items():
        assert on_page[key] == (f"{value:.4f}" if isinstance(value, float) else str(value)), key
    assert re.search(r'id="num-queries">(\d+)<', dom).group(1) == str(metrics["num_query"])
    browse(page, f"--screenshot={screenshot}", "--window-size=1000,1400")
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float32)
    assert pixels.std() > 20  # not a blank page
    return dom, pixels
