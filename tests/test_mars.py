"""MARS parser on a synthetic tree in the release layout: round trip, both protocols, every bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image, ImageFilter

from reid.data.jpeg import decode_frame
from reid.data.mars import MarsFrameDataset, Tracklet, load_mars, sample_frames, to_unit_float
from reid.errors import ConfigError, DataError
from tests.helpers.mars import write_small_mars

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One synthetic tree per module (read only) and its ground truth."""
    root = tmp_path_factory.mktemp("pristine") / "MARS"
    return root, write_small_mars(root)


@pytest.fixture
def tree(tmp_path, pristine):
    """A private copy of the pristine tree that a test may break."""
    root = tmp_path / "MARS"
    shutil.copytree(pristine[0], root)
    return root, pristine[1]


def expected(root: Path, split: str, rows) -> list[Tracklet]:
    """Tracklets as the ground truth says they must parse: full paths, release pid, 0-based camera."""
    return [
        Tracklet(tuple(str(root / f"bbox_{split}" / n[:4] / n) for n in r.names), r.pid, r.camid - 1)
        for r in rows
    ]


def test_round_trip_torchreid(pristine):
    root, truth = pristine
    splits = load_mars(root, protocol="torchreid")
    queries = set(truth.query)
    assert splits.train == expected(root, "train", truth.train)
    assert splits.query == expected(
        root, "test", [truth.test[i] for i in truth.query if truth.test[i].pid != -1]
    )
    gallery = [r for i, r in enumerate(truth.test) if i not in queries and r.pid != -1]
    assert splits.gallery == expected(root, "test", gallery)
    assert splits.skipped_frames == 0


def test_round_trip_official(pristine):
    root, truth = pristine
    splits = load_mars(root, protocol="official")
    assert splits.query == expected(root, "test", [truth.test[i] for i in truth.query])
    assert splits.gallery == expected(root, "test", truth.test)  # queries, distractors and junk included
    assert {t.pid for t in splits.gallery} >= {0, -1}


def test_counts_follow_the_ground_truth(pristine):
    root, truth = pristine
    splits = load_mars(root, protocol="official")
    counts = splits.counts()
    assert counts["train"] == {
        "ids": len({r.pid for r in truth.train}),
        "tracklets": len(truth.train),
        "frames": sum(len(r.names) for r in truth.train),
        "cameras": len({r.camid for r in truth.train}),
        "distractors": 0,
        "junk": 0,
    }
    assert counts["gallery"]["tracklets"] == len(truth.test)
    assert counts["gallery"]["frames"] == sum(len(r.names) for r in truth.test)
    assert counts["gallery"]["ids"] == len({r.pid for r in truth.test if r.pid > 0})
    assert counts["gallery"]["distractors"] == sum(r.pid == 0 for r in truth.test) == 3
    assert counts["gallery"]["junk"] == sum(r.pid == -1 for r in truth.test) == 2
    table = splits.summary()
    assert table.row_count == 3 and "official" in str(table.title)


def test_generator_follows_the_release_rules(pristine):
    """Queries: 2..6 per identity, one camera each; some have no other-camera gallery match (torchreid)."""
    _, truth = pristine
    queries = set(truth.query)
    by_pid: dict[int, list[int]] = {}
    for i in truth.query:
        by_pid.setdefault(truth.test[i].pid, []).append(truth.test[i].camid)
    assert all(2 <= len(c) <= 6 and len(set(c)) == len(c) for c in by_pid.values())
    assert 0 not in by_pid and -1 not in by_pid

    def has_match(i):
        q = truth.test[i]
        return any(
            r.pid == q.pid and r.camid != q.camid for j, r in enumerate(truth.test) if j not in queries
        )

    assert 0 < sum(not has_match(i) for i in truth.query) < len(truth.query)
    real_test_ids = {r.pid for r in truth.test if r.pid > 0}
    assert set(by_pid) < real_test_ids  # some identities are gallery-only
    assert not real_test_ids & {r.pid for r in truth.train}
    # tracks files are contiguous: row i + 1 starts right after row i
    tracks = scipy.io.loadmat(pristine[0] / "info" / "tracks_test_info.mat")["track_test_info"]
    assert tracks.dtype == np.float64 and tracks.shape == (len(truth.test), 4)
    assert tracks[0, 0] == 1 and np.all(tracks[1:, 0] == tracks[:-1, 1] + 1)


def test_name_files_crlf_and_folder_order(pristine):
    root, truth = pristine
    raw = (root / "info" / "test_name.txt").read_bytes()
    lines = raw.split(b"\r\n")
    assert lines[-1] == b"" and all(b"\n" not in line and b"\r" not in line for line in lines)
    folders = [line[:4] for line in lines[:-1]]
    order = list(dict.fromkeys(folders))
    assert order[:2] == [b"00-1", b"0000"] and order == sorted(order)
    query = scipy.io.loadmat(root / "info" / "query_IDX.mat")["query_IDX"]
    assert query.dtype == np.uint16 and query.shape == (1, len(truth.query)) and query.min() >= 1
    splits = load_mars(root, protocol="official")
    assert splits.gallery[0].pid == -1 and "/00-1/" in splits.gallery[0].paths[0]
    assert not any(p.endswith("\r") for t in splits.gallery for p in t.paths)


def test_bad_protocol_is_a_config_error(pristine):
    with pytest.raises(ConfigError, match="protocol"):
        load_mars(pristine[0], protocol="market")


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mars(tmp_path / "nowhere")


def test_missing_folder_and_info_files_are_all_listed(tree):
    root, _ = tree
    shutil.rmtree(root / "bbox_test")
    (root / "info" / "query_IDX.mat").unlink()
    (root / "info" / "train_name.txt").unlink()
    with pytest.raises(DataError) as err:
        load_mars(root)
    assert all(s in str(err.value) for s in ("bbox_test/", "info/query_IDX.mat", "info/train_name.txt"))


@pytest.mark.parametrize("keep_bytes", [0, 300], ids=["empty", "truncated"])
def test_unreadable_tracks_file_is_named(tree, keep_bytes):
    root, _ = tree
    path = root / "info" / "tracks_train_info.mat"
    path.write_bytes(path.read_bytes()[:keep_bytes])
    with pytest.raises(DataError, match=f"{path} could not be read as a MATLAB .mat file"):
        load_mars(root)


def test_mat_with_wrong_variable(tree):
    root, _ = tree
    path = root / "info" / "tracks_train_info.mat"
    scipy.io.savemat(path, {"tracks": scipy.io.loadmat(path)["track_train_info"]})
    with pytest.raises(
        DataError, match=r"tracks_train_info\.mat has no variable 'track_train_info' \(found: tracks"
    ):
        load_mars(root)


def test_mat_with_wrong_shape(tree):
    root, _ = tree
    path = root / "info" / "tracks_test_info.mat"
    scipy.io.savemat(path, {"track_test_info": scipy.io.loadmat(path)["track_test_info"][:, :3]})
    with pytest.raises(DataError, match=r"tracks_test_info\.mat.*expected N x 4"):
        load_mars(root)


def test_query_index_out_of_range(tree):
    root, truth = tree
    bad = np.array([[1, len(truth.test) + 1]], dtype=np.uint16)
    scipy.io.savemat(root / "info" / "query_IDX.mat", {"query_IDX": bad})
    with pytest.raises(DataError, match=rf"query_IDX\.mat: entry 2 .* is {len(truth.test) + 1}, outside"):
        load_mars(root)


def test_track_end_beyond_the_name_list(tree):
    root, truth = tree
    path = root / "info" / "tracks_train_info.mat"
    tracks = scipy.io.loadmat(path)["track_train_info"]
    tracks[-1, 1] += 1
    scipy.io.savemat(path, {"track_train_info": tracks})
    with pytest.raises(DataError, match=rf"row {len(truth.train)} of 'track_train_info'.*1-based"):
        load_mars(root)


def test_zero_based_tracks_are_caught(tree):
    """Start/end written 0-based (a common export bug) shift every tracklet by one frame: rejected."""
    root, _ = tree
    path = root / "info" / "tracks_test_info.mat"
    tracks = scipy.io.loadmat(path)["track_test_info"]
    tracks[1:, :2] -= 1  # keep row 1 in range so the identity check, not the range check, fires
    scipy.io.savemat(path, {"track_test_info": tracks})
    with pytest.raises(DataError, match="another identity or camera"):
        load_mars(root)


@pytest.mark.parametrize("change", ["identity", "camera"])
def test_tracklet_mixing_identities_or_cameras(tree, change):
    root, truth = tree
    row = next(r for r in truth.train if len(r.names) >= 2)
    old = row.names[1]
    other_pid = next(r.pid for r in truth.train if r.pid != row.pid)
    other_cam = row.camid % 6 + 1
    new = f"{other_pid:04d}{old[4:]}" if change == "identity" else f"{old[:5]}{other_cam}{old[6:]}"
    shutil.copy(root / "bbox_train" / old[:4] / old, root / "bbox_train" / new[:4] / new)  # on disk, too
    names = root / "info" / "train_name.txt"
    names.write_bytes(names.read_bytes().replace(old.encode(), new.encode()))
    with pytest.raises(
        DataError, match=r"tracks_train_info\.mat: tracklet row \d+ .*another identity or camera"
    ):
        load_mars(root)


def test_malformed_name_line(tree):
    root, _ = tree
    names = root / "info" / "test_name.txt"
    lines = names.read_bytes().split(b"\r\n")
    lines[4] = b"frame_0005.jpg"
    names.write_bytes(b"\r\n".join(lines))
    with pytest.raises(
        DataError, match=r"test_name\.txt, line 5: 'frame_0005\.jpg' is not a MARS frame name"
    ):
        load_mars(root)


def test_missing_frame_fails_or_is_skipped(tree):
    root, truth = tree
    row = max(range(len(truth.train)), key=lambda i: len(truth.train[i].names))
    name = truth.train[row].names[0]
    (root / "bbox_train" / name[:4] / name).unlink()
    with pytest.raises(
        DataError, match=rf"1 frames listed in .*train_name\.txt are missing.*{name}.*skip_bad_frames"
    ):
        load_mars(root)
    splits = load_mars(root, skip_bad_frames=True)
    assert splits.skipped_frames == 1 and splits.skipped_tracklets == 0
    assert splits.train[row].paths == expected(root, "train", [truth.train[row]])[0].paths[1:]
    assert "skipped 1 missing" in splits.summary().caption


def test_tracklet_with_every_frame_missing_is_dropped(tree):
    """Dropping an emptied query tracklet must not shift the other query rows."""
    root, truth = tree
    lost = truth.query[0]
    for name in truth.test[lost].names:
        (root / "bbox_test" / name[:4] / name).unlink()
    splits = load_mars(root, protocol="official", skip_bad_frames=True)
    assert splits.skipped_frames == len(truth.test[lost].names) and splits.skipped_tracklets == 1
    assert splits.query == expected(root, "test", [truth.test[i] for i in truth.query[1:]])


def test_frame_dataset_items(pristine):
    root, truth = pristine
    splits = load_mars(root)
    data = MarsFrameDataset(splits.query[:3])
    assert len(data) == sum(len(t.paths) for t in splits.query[:3])
    image, pid, camid, t = data[len(splits.query[0].paths)]  # first frame of the second tracklet
    assert image.shape == (3, 128, 64) and image.dtype == torch.uint8 and image.float().std() > 10
    assert torch.equal(
        image,
        torch.from_numpy(decode_frame(data.paths[len(splits.query[0].paths)], 128, 64)).permute(2, 0, 1),
    )
    scaled = to_unit_float(image[None])
    assert scaled.dtype == torch.float32 and torch.equal(scaled[0] * 255, image.float())
    assert (pid, camid, t) == (splits.query[1].pid, splits.query[1].camid, 1)
    assert data.pids.tolist() == [q.pid for q in splits.query[:3] for _ in q.paths]
    flipped = MarsFrameDataset(splits.query[:1], height=144, width=72, transform=lambda x: x.flip(-1))
    assert torch.equal(flipped[0][0], MarsFrameDataset(splits.query[:1], height=144, width=72)[0][0].flip(-1))


def test_decode_frame_matches_a_full_decode(pristine):
    """Half size comes from libjpeg's DCT scaling: the same picture as a full decode reduced 2x2 (compared
    blurred, as the synthetic frames' pixel noise is filtered differently); other sizes are exact."""
    root, _ = pristine
    path = load_mars(root).query[0].paths[0]
    with Image.open(path) as img:
        full = img.convert("RGB")
    ours = decode_frame(path, 128, 64)
    assert ours.shape == (128, 64, 3) and ours.dtype == np.uint8 and ours.flags.writeable

    def blurred(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(2)), dtype=float)

    reduced = np.asarray(full.reduce(2))
    match = np.abs(blurred(ours) - blurred(reduced)).mean()
    mirrored = np.abs(blurred(ours) - blurred(reduced[:, ::-1].copy())).mean()
    assert match < 1.5 and mirrored > 4 * match  # the same picture, the right way round
    resized = full.resize((72, 144), Image.Resampling.BILINEAR)
    assert np.array_equal(decode_frame(path, 144, 72), np.asarray(resized))


def test_unreadable_jpeg(tree):
    root, _ = tree
    splits = load_mars(root)
    tracklet = next(t for t in splits.train if len(t.paths) >= 2)
    Path(tracklet.paths[0]).write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=rf"{tracklet.paths[0]} could not be read.*skip_bad_frames"):
        MarsFrameDataset([tracklet])[0]
    data = MarsFrameDataset([tracklet], skip_bad_frames=True)
    image, pid, _, _ = data[0]
    assert (
        torch.equal(image, data[1][0]) and pid == tracklet.pid
    )  # replaced by the next frame of the tracklet
    assert data.bad_paths == {tracklet.paths[0]}


def test_a_png_named_jpg_is_unreadable(tmp_path):
    """Frames are opened as JPEGs only: anything else is an unreadable frame, named in the error."""
    path = tmp_path / "0001C1T0001F001.jpg"
    Image.new("RGB", (128, 256), (200, 10, 10)).save(path, format="PNG")
    with pytest.raises(OSError, match=str(path)):
        decode_frame(str(path), 128, 64)


def test_sample_frames():
    tracklet = Tracklet(tuple(f"f{i}" for i in range(10)), pid=5, camid=0)
    assert sample_frames(tracklet, 4).paths == ("f0", "f3", "f6", "f9")
    assert sample_frames(tracklet, 12) is tracklet
    assert sample_frames(tracklet, 4).pid == 5


def test_generator_refuses_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="refusing"):
        write_small_mars(tmp_path)
    script = [sys.executable, str(ROOT / "scripts" / "make_synthetic_mars.py"), str(tmp_path)]
    result = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "refusing" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
