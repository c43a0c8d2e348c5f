"""CUB-200-2011 and Stanford Online Products on generated trees in their exact release layouts."""

from pathlib import Path

import pytest
import torch

from reid.data.retrieval_benchmarks import load_cub200, load_sop
from reid.errors import DataError
from reid.training.datamodules import Cub200DataModule, SopDataModule
from tests.helpers.image_trees import write_cub, write_sop


@pytest.fixture(scope="module")
def cub(tmp_path_factory) -> Path:
    return write_cub(tmp_path_factory.mktemp("cub"), classes=6, per_class=3)


@pytest.fixture(scope="module")
def sop(tmp_path_factory) -> Path:
    return write_sop(tmp_path_factory.mktemp("sop"), train_classes=4, test_classes=3, per_class=3)


def test_cub_first_half_of_the_classes_trains(cub):
    splits = load_cub200(cub.parent)  # the folder holding CUB_200_2011/ works too
    assert splits.root == cub
    assert {t.pid for t in splits.train} == {0, 1, 2} and {t.pid for t in splits.test} == {3, 4, 5}
    assert splits.class_names[3] == "004.Bird_4"
    assert all(Path(t.paths[0]).parent.name == splits.class_names[t.pid] for t in splits.train + splits.test)
    assert splits.counts() == {"train": {"classes": 3, "images": 9}, "test": {"classes": 3, "images": 9}}


def test_cub_datamodule_gives_one_test_loader_of_images_and_labels(cub):
    module = Cub200DataModule(
        str(cub), P=2, K=2, height=16, width=16, num_workers=0, flip=True, crop_scale=1.5
    )
    module.setup("fit")
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8
    (loader,) = module.val_dataloader()
    assert torch.cat([b[1] for b in loader]).tolist() == [3] * 3 + [4] * 3 + [5] * 3
    assert module.kind == "unseen_classes" and len(module.test_paths) == 9


def copy_cub(cub: Path, dest: Path) -> Path:
    dest.mkdir()
    (dest / "images").symlink_to(cub / "images")
    for name in ("images.txt", "image_class_labels.txt", "classes.txt"):
        (dest / name).write_text((cub / name).read_text())
    return dest


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("classes.txt", None, "lacks classes.txt"),
        ("images.txt", lambda t: t.replace("2 ", "two ", 1), r"images.txt, line 2: 'two "),
        ("image_class_labels.txt", lambda t: t + "99 1\n", "line 19: image id 99"),
        (
            "image_class_labels.txt",
            lambda t: t.replace("3 1\n", ""),
            "images.txt, line 3: image id 3 has no class",
        ),
        (
            "images.txt",
            lambda t: t.replace("Bird_1_0000", "Gone"),
            "1 images listed in .*images.txt are missing",
        ),
    ],
)
def test_broken_cub_files_are_named(cub, tmp_path, file, edit, message):
    root = copy_cub(cub, tmp_path / "CUB_200_2011")
    if edit is None:
        (root / file).unlink()
    else:
        (root / file).write_text(edit((root / file).read_text()))
    with pytest.raises(DataError, match=message):
        load_cub200(root)


def test_sop_class_id_is_the_label(sop):
    splits = load_sop(sop)
    assert {t.pid for t in splits.train} == {0, 1, 2, 3} and {t.pid for t in splits.test} == {4, 5, 6}
    assert splits.train[0].paths[0] == str(sop / "chair_final" / "000001_0.JPG")
    module = SopDataModule(str(sop.parent), P=2, K=2, height=8, width=8, num_workers=0)
    module.setup("fit")
    assert next(iter(module.train_dataloader()))[0].shape == (4, 3, 8, 8)


def copy_sop(sop: Path, dest: Path) -> Path:
    dest.mkdir()
    for item in sop.iterdir():
        if item.suffix == ".txt":
            (dest / item.name).write_text(item.read_text())
        else:
            (dest / item.name).symlink_to(item)
    return dest


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("image_id class_id", "id class", 1),
            "Ebay_test.txt, line 1: expected the header",
        ),
        (lambda t: t.replace(" 5 ", " five ", 1), "Ebay_test.txt, line 2: '13 five"),
        (lambda t: t.replace(" 5 ", " 1 ", 1), "lists class_id 1, which Ebay_train.txt lists too"),
        (lambda t: t.replace("_final/000005_0", "_final/gone"), "missing on disk, e.g. .*gone.JPG"),
        (lambda t: t.splitlines()[0] + "\n", "Ebay_test.txt lists nothing"),
    ],
)
def test_broken_sop_lists_are_named(sop, tmp_path, edit, message):
    root = copy_sop(sop, tmp_path / "Stanford_Online_Products")
    (root / "Ebay_test.txt").write_text(edit((root / "Ebay_test.txt").read_text()))
    with pytest.raises(DataError, match=message):
        load_sop(root)
