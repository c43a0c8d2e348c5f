"""Ranked-list records and pictures: the lists the metrics rank, each query's AP, worst first."""

import numpy as np
import pytest
from PIL import Image

from reid.data.mars import Tracklet
from reid.reporting.ranked_lists import query_gallery_records, save_ranked_lists
from reid.retrieval.ranking import rank_metrics


def tracklets(pids, camids, folder) -> list[Tracklet]:
    return [
        Tracklet((f"{folder}/{i}_a.png", f"{folder}/{i}_b.png"), int(p), int(c))
        for i, (p, c) in enumerate(zip(pids, camids, strict=True))
    ]


def test_query_gallery_records_follow_the_ranking_rules():
    rng = np.random.default_rng(0)
    q_pids, q_cams = rng.integers(0, 4, 12), rng.integers(0, 2, 12)
    g_pids, g_cams = np.append(rng.integers(0, 4, 30), [-1, -1]), rng.integers(0, 2, 32)
    distmat = rng.integers(0, 5, (12, 32)).astype(np.float32)  # ties
    junk = g_pids == -1
    aps = rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, ap="trapezoid", g_junk=junk).query_ap
    query, gallery = tracklets(q_pids, q_cams, "q"), tracklets(g_pids, g_cams, "g")
    records = query_gallery_records(distmat, query, gallery, junk, aps, top_k=5)
    assert len(records) == 12
    known = [r.ap for r in records if r.ap is not None]
    assert known == sorted(known) and known == sorted(aps[~np.isnan(aps)].tolist())
    for record in records:
        q = record.index
        kept = [
            g for g in range(32) if not junk[g] and not (g_pids[g] == q_pids[q] and g_cams[g] == q_cams[q])
        ]
        expected = sorted(kept, key=lambda g: (distmat[q, g], g))[:5]  # stable: ties in gallery order
        assert [item.path for item in record.ranked] == [gallery[g].paths[1] for g in expected]
        assert [item.correct for item in record.ranked] == [bool(g_pids[g] == q_pids[q]) for g in expected]
        assert [item.distance for item in record.ranked] == [distmat[q, g] for g in expected]
        assert (record.label, record.camid, record.path) == (q_pids[q], q_cams[q], query[q].paths[1])


def test_pictures_of_evenly_spaced_queries(tmp_path):
    for name in ("q/0_b.png", "q/1_b.png", "q/2_b.png", "g/0_b.png", "g/1_b.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 16), "grey").save(tmp_path / name)
    query = tracklets([1, 2, 1], [0, 0, 1], tmp_path / "q")
    gallery = tracklets([1, 2], [1, 1], tmp_path / "g")
    distmat = np.array([[0.5, 1.0], [2.0, 0.1], [0.3, 0.2]])
    aps = np.array([1.0, 1.0, np.nan])
    records = query_gallery_records(distmat, query, gallery, np.zeros(2, bool), aps)
    assert records[-1].ap is None and [len(r.ranked) for r in sorted(records, key=lambda r: r.index)] == [
        2,
        2,
        1,
    ]
    paths = save_ranked_lists(tmp_path / "out", records, n_show=2)
    assert [p.name for p in paths] == ["query_0000_pid0001.png", "query_0002_pid0001.png"]
    assert Image.open(paths[1]).size == pytest.approx((2 * 72 + 16, 128 + 8 + 14))
