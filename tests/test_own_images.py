"""Own images: class-per-folder trees in each layout and CSV lists, with every malformed input."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reid.data.class_splits import ClassSplits
from reid.data.image_files import decode_image, read_image_csv
from reid.data.mars import MarsSplits
from reid.data.own_images import load_image_csv, load_image_folder
from reid.errors import ConfigError, DataError
from reid.training.datamodules import CsvDataModule, ImageFolderDataModule
from tests.helpers.image_trees import write_class_folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """root/class_00..05/ in mixed formats and modes, with a non-image file and an empty class folder."""
    root = tmp_path_factory.mktemp("folders")
    write_class_folders(root, classes=6, per_class=4)
    (root / "class_01" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "class_02" / "notes.txt").write_text("not an image")
    (root / "empty_class").mkdir()
    return root


def test_classes_split_sorted_first_half_trains_and_skips_empty_folders(folders, caplog):
    with caplog.at_level(logging.WARNING):
        splits = load_image_folder(folders, "auto")
    assert isinstance(splits, ClassSplits)
    assert "empty_class" in caplog.text and "no .bmp, .jpeg, .jpg, .png, .webp files" in caplog.text
    assert splits.class_names == tuple(f"class_{c:02d}" for c in range(6))
    assert {t.pid for t in splits.train} == {0, 1, 2} and {t.pid for t in splits.test} == {3, 4, 5}
    assert len(splits.train) == len(splits.test) == 12  # Thumbs.db and notes.txt ignored
    assert Path(splits.test[0].paths[0]).parent.name == "class_03"
    two = load_image_folder(folders, "classes", train_classes=2)
    assert {t.pid for t in two.train} == {0, 1}


@pytest.mark.parametrize("train_classes", [0, 6])
def test_train_classes_out_of_range_is_a_config_error(folders, train_classes):
    with pytest.raises(ConfigError, match=f"dataset.train_classes={train_classes}"):
        load_image_folder(folders, "classes", train_classes)


def test_every_format_and_mode_becomes_rgb(folders):
    module = ImageFolderDataModule(
        str(folders), P=3, K=2, height=24, width=20, num_workers=0, eval_batch_size=50
    )
    module.setup("fit")
    assert module.kind == "unseen_classes" and module.class_names[0] == "class_00"
    images, labels = next(iter(module.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (6, 3, 24, 20)
    assert len(set(labels.tolist())) == 3
    (loader,) = module.test_dataloader()
    images, labels = next(iter(loader))
    assert images.shape == (12, 3, 24, 20) and labels.tolist() == [t.pid for t in module.splits.test]
    assert module.test_paths == [t.paths[0] for t in module.splits.test]
    for path, image in zip(module.test_paths, images, strict=True):  # each equals PIL's RGB conversion
        with Image.open(path) as source:
            rgb = (
                source.convert("RGBA").convert("RGB") if source.mode in {"P", "LA"} else source.convert("RGB")
            )
        if Path(path).suffix.lower() not in {".jpg", ".jpeg"}:
            expected = np.asarray(rgb.resize((20, 24), Image.Resampling.BILINEAR))
            assert np.array_equal(image.permute(1, 2, 0).numpy(), expected), path
        assert np.array_equal(image.permute(1, 2, 0).numpy(), decode_image(path, 24, 20))


def test_train_and_test_folders_share_class_names(tmp_path):
    write_class_folders(tmp_path / "train", classes=3, per_class=2, seed=1)
    test = write_class_folders(tmp_path / "test", classes=5, per_class=2, seed=2)
    for name in ("class_00", "class_01", "class_02"):  # the test split's own classes only: unseen ones
        for path in test[name]:
            path.unlink()
        (tmp_path / "test" / name).rmdir()
    splits = load_image_folder(tmp_path)
    assert isinstance(splits, ClassSplits)
    assert splits.class_names == tuple(f"class_{c:02d}" for c in range(5))
    assert {t.pid for t in splits.test} == {3, 4} and {t.pid for t in splits.train} == {0, 1, 2}


def test_train_query_gallery_folders_rank_like_reid(tmp_path):
    for split, seed in (("train", 1), ("query", 2), ("gallery", 2)):
        write_class_folders(tmp_path / split, classes=3, per_class=2, seed=seed)
    module = ImageFolderDataModule(str(tmp_path), P=2, K=2, height=16, width=16, num_workers=0)
    module.setup("fit")
    assert module.kind == "query_gallery" and module.protocol == "torchreid"
    assert isinstance(module.splits, MarsSplits)
    assert {t.camid for t in module.splits.query} == {0} and {t.camid for t in module.splits.gallery} == {1}
    query, gallery = module.test_dataloader()
    images, pids, camids, tracklet_ids = next(iter(query))
    assert pids.tolist() == [0, 0, 1, 1, 2, 2] and camids.tolist() == [0] * 6
    assert next(iter(gallery))[2].tolist() == [1] * 6


@pytest.mark.parametrize(
    ("present", "message"),
    [(["train"], "split folders train;"), (["train", "test", "query"], "expected train/ and test/")],
)
def test_incomplete_split_folders_stop(tmp_path, present, message):
    for split in present:
        write_class_folders(tmp_path / split, classes=2, per_class=1)
    with pytest.raises(DataError, match=message) as error:
        load_image_folder(tmp_path)
    assert "dataset.split=classes" in str(error.value)


def test_missing_root_and_folders_without_images_stop(tmp_path):
    with pytest.raises(ConfigError, match="dataset.root=/path/to/images"):
        load_image_folder(None)
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="holds no class folders with images"):
        load_image_folder(tmp_path)
    with pytest.raises(ConfigError, match="dataset.split='random'"):
        load_image_folder(tmp_path, "random")


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def csv_images(tmp_path_factory) -> Path:
    """A folder with images a/0.jpg .. a/3.jpg, b/..., c/..., d/..., for CSV lists beside it."""
    root = tmp_path_factory.mktemp("csv")
    write_class_folders(root / "images", classes=4, per_class=4)
    return root


def rows(root: Path) -> list[tuple[str, str]]:
    """(relative path, class name) of every image under root/images."""
    return sorted((str(p.relative_to(root)), p.parent.name) for p in (root / "images").rglob("img_*"))


def test_csv_query_gallery_with_cameras_and_relative_paths(csv_images):
    lines = ["path,label,camera,split"]
    for k, (path, name) in enumerate(rows(csv_images)):
        split = "train" if name in ("class_00", "class_01") else ("query" if k % 4 == 0 else "gallery")
        lines.append(f"{path},{name},{k % 3},{split}")
    splits = load_image_csv(write_csv(csv_images / "qg.csv", "\n".join(lines) + "\n"))
    assert isinstance(splits, MarsSplits)
    assert [t.paths[0] for t in splits.query] == [
        str(csv_images / r[0]) for k, r in enumerate(rows(csv_images)) if k >= 8 and k % 4 == 0
    ]
    assert [t.camid for t in splits.query] == [k % 3 for k in range(8, 16) if k % 4 == 0]
    assert {t.pid for t in splits.train} == {0, 1} and {t.pid for t in splits.gallery} == {2, 3}


def test_csv_labels_are_integers_or_texts_numbered_by_first_appearance(csv_images):
    """All-integer labels keep their values; once one label is text, every distinct text gets its own
    number in order of appearance, so "3" and "cat" never share one."""
    (a, _), (b, _), (c, _) = rows(csv_images)[:3]
    numbers = read_image_csv(write_csv(csv_images / "ints.csv", f"path,label\n{a},7\n{b},3\n{c},7\n"))
    assert [r.label for r in numbers] == [7, 3, 7]
    mixed = read_image_csv(write_csv(csv_images / "mixed.csv", f"path,label\n{a},3\n{b},cat\n{c},0\n"))
    assert [r.label for r in mixed] == [0, 1, 2]
    unlabelled = write_csv(csv_images / "some.csv", f"path,label\n{a},cat\n{b},\n{c},cat\n")
    assert [r.label for r in read_image_csv(unlabelled, require_label=False)] == [0, None, 0]


def test_csv_without_split_column_splits_by_class(csv_images):
    lines = ["path,label"] + [f"{path},{int(name[-1]) * 10}" for path, name in rows(csv_images)]
    module = CsvDataModule(
        str(write_csv(csv_images / "classes.csv", "\n".join(lines))),
        P=2,
        K=2,
        height=8,
        width=8,
        num_workers=0,
    )
    module.setup("fit")
    assert module.kind == "unseen_classes"
    assert {t.pid for t in module.splits.train} == {0, 10} and {t.pid for t in module.splits.test} == {20, 30}
    assert next(iter(module.train_dataloader()))[0].shape == (4, 3, 8, 8)


def test_csv_train_test_split(csv_images):
    lines = ["path,label,split"] + [
        f"{path},{name},{'train' if name < 'class_02' else 'test'}" for path, name in rows(csv_images)
    ]
    splits = load_image_csv(write_csv(csv_images / "tt.csv", "\n".join(lines)))
    assert isinstance(splits, ClassSplits) and len(splits.train) == len(splits.test) == 8


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("images/nowhere.png,class_00,train", "line 3: the image '.*nowhere.png' does not exist"),
        ("{path},,train", "line 3: the label is empty"),
        ("{path},class_00,validation", "line 3: split='validation' is not one of"),
        ("{path},class_00,", "line 3: no split given, unlike line 2"),
    ],
)
def test_bad_csv_rows_stop_with_their_line(csv_images, tmp_path, line, message):
    first, second = rows(csv_images)[:2]
    text = f"path,label,split\n{first[0]},class_00,train\n{line.format(path=second[0])}\n"
    csv = write_csv(csv_images / f"bad_{abs(hash(line))}.csv", text)
    with pytest.raises(DataError, match=message) as error:
        load_image_csv(csv)
    assert str(csv) in str(error.value)


def test_csv_problems_with_the_file_itself(csv_images):
    with pytest.raises(ConfigError, match="dataset.path=/path/to/list.csv"):
        load_image_csv(None)
    with pytest.raises(DataError, match="does not exist"):
        load_image_csv(csv_images / "missing.csv")
    with pytest.raises(DataError, match="line 1: the header is file,class"):
        load_image_csv(write_csv(csv_images / "header.csv", "file,class\nimages/x.jpg,1\n"))
    only_train = write_csv(
        csv_images / "train_only.csv", f"path,label,split\n{rows(csv_images)[0][0]},1,train\n"
    )
    with pytest.raises(DataError, match="splits train; expected train and test"):
        load_image_csv(only_train)
