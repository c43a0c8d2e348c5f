"""search.py on small generated feature files: its outputs against references computed here, the threshold,
bad input, and run folders that are never overwritten."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from reid.errors import ConfigError, DataError
from reid.inference.model import load_model
from reid.retrieval.distances import euclidean_distances
from reid.retrieval.feature_files import FeatureSet, read_features, write_features
from reid.retrieval.ranking import rank_metrics
from reid.tasks.search import search
from tests.helpers.cli import run_script
from tests.helpers.inference import CONVNET_RGB, write_checkpoint, write_images
from tests.helpers.search_files import DIM, compose_search, write_feature_file


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    return write_feature_file(tmp_path, "query", 9, rng), write_feature_file(tmp_path, "gallery", 30, rng)


def test_search_writes_the_exact_top_k_metrics_and_report(files, tmp_path):
    query_file, gallery_file = files
    out = tmp_path / "run"
    cfg = compose_search(out, f"query={query_file}", f"gallery={gallery_file}", "top_k=4", "chunk_size=7")
    result = search(cfg)
    query, gallery = read_features(query_file), read_features(gallery_file)
    distances = euclidean_distances(
        torch.from_numpy(query.features), torch.from_numpy(gallery.features)
    ).numpy()
    order = np.argsort(distances, axis=1, kind="stable")[:, :4]

    rows = read_csv(out / "matches.csv")
    assert list(rows[0]) == [
        "query_path", "rank", "gallery_path", "distance", "query_label", "gallery_label", "correct"
    ]  # fmt: skip
    assert len(rows) == 9 * 4
    for row, (q, rank) in zip(rows, np.ndindex(9, 4), strict=True):
        g = order[q, rank]
        assert row["query_path"] == query.paths[q] and row["rank"] == str(rank + 1)
        assert row["gallery_path"] == gallery.paths[g]
        assert float(row["distance"]) == pytest.approx(distances[q, g], rel=1e-5)
        assert row["correct"] == str(query.labels[q] == gallery.labels[g])
    assert (
        json.loads((out / "matches.json").read_text())["matches"][5]["gallery_path"]
        == rows[5]["gallery_path"]
    )

    expected = rank_metrics(
        distances, query.labels, gallery.labels, query.camids, gallery.camids, max_rank=30
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == result and saved["camera_filter"] is True
    assert saved["mAP"] == pytest.approx(expected.mAP) and saved["rank1"] == pytest.approx(expected.cmc[0])
    assert (saved["num_query"], saved["num_gallery"]) == (9, 30)

    page = (out / "report.html").read_text()
    assert "http" not in page  # nothing fetched from elsewhere
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (out / src).is_file()
    assert '<span id="num-queries">9</span>' in page
    assert 'data-metric="num_gallery">30<' in page


def test_threshold_marks_matches_and_unlabelled_files_give_no_metrics(tmp_path):
    rng = np.random.default_rng(1)
    query_file = write_feature_file(tmp_path, "q", 4, rng, labelled=False)
    gallery_file = write_feature_file(tmp_path, "g", 12, rng, labelled=False)
    out = tmp_path / "run"
    search(compose_search(out, f"query={query_file}", f"gallery={gallery_file}", "threshold=1.5"))
    rows = read_csv(out / "matches.csv")
    assert list(rows[0]) == ["query_path", "rank", "gallery_path", "distance", "match"]
    assert {row["match"] for row in rows} == {"True", "False"}  # the threshold cuts the lists
    assert all((row["match"] == "True") == (float(row["distance"]) <= 1.5) for row in rows)
    assert not (out / "metrics.json").exists() and (out / "report.html").is_file()


def test_features_of_another_dimension_stop_naming_both_files(files, tmp_path):
    query_file = write_feature_file(tmp_path, "other", 3, np.random.default_rng(2), dim=DIM + 4)
    cfg = compose_search(tmp_path / "run", f"query={query_file}", f"gallery={files[1]}")
    with pytest.raises(DataError, match="12-dimensional") as error:
        search(cfg)
    assert str(query_file) in str(error.value) and str(files[1]) in str(error.value)
    assert f"{DIM}-dimensional" in str(error.value)


def test_a_folder_with_an_earlier_search_is_not_overwritten(files, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "matches.csv").write_text("an earlier search\n")
    with pytest.raises(ConfigError, match="already holds the outputs of a search"):
        search(compose_search(out, f"query={files[0]}", f"gallery={files[1]}"))
    assert (out / "matches.csv").read_text() == "an earlier search\n"
    assert sorted(p.name for p in out.iterdir()) == ["matches.csv"]


def test_query_images_need_a_checkpoint(files, tmp_path):
    cfg = compose_search(tmp_path / "run", f"query={tmp_path / 'images'}", f"gallery={files[1]}")
    with pytest.raises(ConfigError, match="ckpt_path="):
        search(cfg)


@pytest.mark.slow
def test_search_cli_gives_every_run_its_own_folder(files, tmp_path):
    """Two runs of the real script (the default dated run folders) write two folders, nothing shared."""
    args = (
        f"query={files[0]}",
        f"gallery={files[1]}",
        f"hydra.run.dir={tmp_path}/outputs/" + "${now:%H-%M-%S-%f}",
    )
    for _ in range(2):
        result = run_script("search.py", *args)
        assert result.returncode == 0, result.stderr
    folders = sorted((tmp_path / "outputs").iterdir())
    assert len(folders) == 2
    assert all((f / "matches.csv").is_file() and (f / "report.html").is_file() for f in folders)
    bad = run_script(
        "search.py",
        f"query={files[0]}",
        f"gallery={tmp_path / 'missing.npz'}",
        f"hydra.run.dir={tmp_path}/bad",
    )
    assert (
        bad.returncode == 1 and "missing.npz' does not exist" in bad.stderr and "Traceback" not in bad.stderr
    )


def test_query_images_are_embedded_with_the_checkpoint_s_model(tmp_path):
    """A folder of query images, read as embed.py reads it (class folders give labels), embedded by the
    checkpoint's model: each image finds its own gallery features at distance 0."""
    ckpt = write_checkpoint(tmp_path / "model.ckpt", CONVNET_RGB)
    paths = [
        path
        for label, name in enumerate(("a", "b"))
        for path in write_images(tmp_path / "photos" / name, [f"{i}.png" for i in range(3)], seed=label)
    ]
    gallery = load_model(ckpt).embed([str(p) for p in paths]).numpy()
    gallery_file = tmp_path / "gallery.npz"
    labels = np.array([0, 0, 0, 1, 1, 1])
    write_features(
        gallery_file, FeatureSet(gallery, np.array([str(p) for p in paths]), labels, np.full(6, -1))
    )
    out = tmp_path / "run"
    search(
        compose_search(out, f"query={tmp_path / 'photos'}", f"gallery={gallery_file}", f"ckpt_path={ckpt}")
    )
    firsts = [row for row in read_csv(out / "matches.csv") if row["rank"] == "1"]
    assert [row["query_path"] for row in firsts] == [str(p) for p in paths]  # the folder, sorted
    assert all(row["gallery_path"] == row["query_path"] and float(row["distance"]) < 1e-5 for row in firsts)
    assert json.loads((out / "metrics.json").read_text())["rank1"] == 1.0  # labels from the class folders
