"""Market-1501: the parser on a generated tree in the release layout, its bad inputs, the datamodule's
loaders and both protocols' ranking against a brute-force reference."""

from pathlib import Path

import numpy as np
import pytest
import torch

from reid.data.market1501 import load_market1501
from reid.data.synthetic_market import SyntheticMarket, make_synthetic_market
from reid.errors import DataError
from reid.retrieval.evaluators import ValidationSet, protocol_evaluator
from reid.training.datamodules import Market1501DataModule

SMALL = dict(ids_train=4, ids_test=8, cameras=6, distractors=3, junk=2, seed=1)


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> SyntheticMarket:
    return make_synthetic_market(tmp_path_factory.mktemp("market"), **SMALL)


def test_generated_tree_has_the_release_layout(market):
    folders = sorted(p.name for p in market.root.iterdir())
    assert market.root.name == "Market-1501-v15.09.15"
    assert folders == ["bounding_box_test", "bounding_box_train", "query"]
    assert (market.root / "bounding_box_test" / "Thumbs.db").is_file()
    assert {-1, 0} <= {image.pid for image in market.gallery}
    assert any(name.startswith("-1_c") for name in (i.name for i in market.gallery))
    keys = [(image.pid, image.camid) for image in market.query]
    assert len(keys) == len(set(keys))  # at most one query per identity and camera
    assert {image.camid for image in market.gallery} <= set(range(1, 7))


@pytest.mark.parametrize("holder", [False, True], ids=["release folder", "folder holding it"])
def test_parser_reads_what_was_written(market, holder):
    splits = load_market1501(market.root.parent if holder else market.root)
    assert splits.root == market.root
    assert [t.paths[0] for t in splits.gallery] == [
        str(market.root / "bounding_box_test" / i.name) for i in market.gallery if i.pid != -1
    ]
    assert [(t.pid, t.camid) for t in splits.query] == [(i.pid, i.camid - 1) for i in market.query]
    assert sorted({t.pid for t in splits.train}) == list(range(SMALL["ids_train"]))  # relabelled
    by_label = {}
    for tracklet, image in zip(splits.train, market.train, strict=True):
        by_label.setdefault(tracklet.pid, set()).add(image.pid)
    assert all(len(pids) == 1 for pids in by_label.values())  # one release identity per label
    counts = splits.counts()
    assert counts["gallery"]["distractors"] == SMALL["distractors"] and counts["gallery"]["junk"] == 0
    assert counts["train"]["ids"] == SMALL["ids_train"] and counts["train"]["distractors"] == 0
    caption = splits.summary().caption
    assert (
        f"{len(market.gallery)} images, of which {len(market.gallery) - SMALL['junk']} are not junk"
        in caption
    )


def copy_tree(market: SyntheticMarket, dest: Path) -> Path:
    for image_folder in market.root.iterdir():
        (dest / image_folder.name).mkdir(parents=True)
        for file in image_folder.iterdir():
            (dest / image_folder.name / file.name).symlink_to(file)
    return dest


def test_missing_folder_names_it_and_the_override(market, tmp_path):
    root = copy_tree(market, tmp_path / "Market")
    for file in (root / "query").iterdir():
        file.unlink()
    (root / "query").rmdir()
    with pytest.raises(DataError) as error:
        load_market1501(root)
    assert "query/" in str(error.value) and "dataset.root=/path/to/Market-1501-v15.09.15" in str(error.value)


@pytest.mark.parametrize("name", ["0002_c1s1_000451.jpg", "2_c1s1_000451_03.jpg", "0002_c0s1_000451_03.jpg"])
def test_badly_named_image_is_named(market, tmp_path, name):
    root = copy_tree(market, tmp_path / "Market")
    (root / "bounding_box_train" / name).write_bytes(b"")
    with pytest.raises(DataError, match=name) as error:
        load_market1501(root)
    assert "PPPP_cCsS_FFFFFF_BB.jpg" in str(error.value)


def test_other_files_are_ignored_and_an_empty_split_stops(market, tmp_path):
    root = copy_tree(market, tmp_path / "Market")
    (root / "query" / "notes.txt").write_text("not an image")
    assert len(load_market1501(root).query) == len(market.query)
    for file in (root / "query").glob("*.jpg"):
        file.unlink()
    with pytest.raises(DataError, match="query"):
        load_market1501(root)


def test_datamodule_serves_query_and_gallery_like_mars(market):
    module = Market1501DataModule(
        str(market.root), P=2, K=3, height=32, width=16, num_workers=0, eval_batch_size=7
    )
    module.setup("fit")
    assert module.kind == "query_gallery" and module.protocol == "official"
    images, pids, camids, tracklet_ids = next(iter(module.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (6, 3, 32, 16)
    assert len(set(pids.tolist())) == 2
    query, gallery = module.test_dataloader()
    images, pids, camids, tracklet_ids = next(iter(query))
    assert images.shape == (7, 3, 32, 16)
    assert pids.tolist() == [t.pid for t in module.splits.query[:7]] and tracklet_ids.tolist() == list(
        range(7)
    )
    assert sum(len(b[0]) for b in gallery) == len(module.splits.gallery)


def brute_force(q_feat, g_feat, q_pids, g_pids, q_cams, g_cams, ap: str) -> tuple[float, float]:
    """mAP and rank-1 by the release's rules, one query at a time: same identity and camera skipped."""
    aps, hits = [], []
    for i in range(len(q_pids)):
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        order = np.argsort(np.linalg.norm(g_feat[keep] - q_feat[i], axis=1), kind="stable")
        good = g_pids[keep][order] == q_pids[i]
        if not good.any():
            continue
        ranks = np.flatnonzero(good) + 1
        precision = np.arange(1, len(ranks) + 1) / ranks
        if ap == "step":
            aps.append(precision.mean())
        else:  # the MATLAB code: trapezoids between the precision before and at each hit
            before = np.arange(len(ranks)) / np.maximum(ranks - 1, 1)  # precision one rank above each hit
            before[ranks == 1] = 1.0
            aps.append(((before + precision) / 2).mean())
        hits.append(good[0])
    return float(np.mean(aps)), float(np.mean(hits))


@pytest.mark.parametrize(("protocol", "ap"), [("official", "trapezoid"), ("torchreid", "step")])
def test_protocols_rank_as_the_brute_force_reference(market, protocol, ap):
    splits = load_market1501(market.root, protocol)
    rng = np.random.default_rng(0)
    center = {pid: rng.normal(size=4) for pid in {t.pid for t in splits.query + splits.gallery}}
    q_feat, g_feat = (
        np.stack([center[t.pid] + rng.normal(scale=1.0, size=4) for t in ts])
        for ts in (splits.query, splits.gallery)
    )

    def frames(tracklets, features) -> ValidationSet:
        fields = ([t.pid for t in tracklets], [t.camid for t in tracklets], list(range(len(tracklets))))
        return ValidationSet(torch.tensor(features, dtype=torch.float32), tuple(map(torch.tensor, fields)))

    metrics = protocol_evaluator(protocol)(
        {0: frames(splits.query, q_feat), 1: frames(splits.gallery, g_feat)}
    )
    arrays = [
        np.array([getattr(t, k) for t in ts])
        for k in ("pid", "camid")
        for ts in (splits.query, splits.gallery)
    ]
    q_pids, g_pids, q_cams, g_cams = arrays
    expected_map, expected_rank1 = brute_force(
        q_feat.astype(np.float32), g_feat.astype(np.float32), q_pids, g_pids, q_cams, g_cams, ap
    )
    assert metrics["mAP"] == pytest.approx(expected_map, abs=1e-5)
    assert metrics["rank1"] == pytest.approx(expected_rank1, abs=1e-6)
