"""`reid.load_model` and embed.py: a checkpoint as a model with its preprocessing, folders and CSV lists
embedded into a resumable features file."""

from __future__ import annotations

import csv
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

import reid
from reid.errors import ConfigError, DataError
from reid.inference.model import load_model
from reid.retrieval.feature_files import FeatureSet, read_features, write_features
from reid.tasks.embed import embed
from reid.tasks.search import search
from tests.helpers.cli import ROOT, run_script
from tests.helpers.configs import CONFIGS
from tests.helpers.inference import (
    CONVNET,
    CONVNET_RGB,
    input_shape,
    train_tiny,
    write_checkpoint,
    write_images,
)
from tests.helpers.search_files import compose_search


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A quickstart checkpoint (grey 28 x 28 digits, 2-D embedding) of a 2-step training."""
    return train_tiny(tmp_path_factory.mktemp("train") / "run")


@pytest.fixture(scope="module")
def model(ckpt):
    return reid.load_model(ckpt)


def reference_embeddings(backbone: torch.nn.Module, paths: list[Path], channels: int, size) -> torch.Tensor:
    """The documented preprocessing written out with PIL alone: RGB, bilinear resize to (H, W), grey by
    PIL's own "L" mode when the model takes one channel, / 255, then the backbone."""
    height, width = size
    arrays = []
    for path in paths:
        image = Image.open(path).convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        image = image.convert("L") if channels == 1 else image
        arrays.append(np.asarray(image, dtype=np.float32).reshape(height, width, channels))
    with torch.no_grad():
        return backbone(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255)


def test_import_reid_stays_free_of_torch_and_load_model_comes_on_first_use():
    code = "import sys, reid, reid.tasks; print(sorted({'torch', 'pytorch_lightning'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stderr[-2000:]
    assert reid.load_model is load_model


def test_meta_describes_the_input_and_the_run(model, ckpt):
    meta = model.meta
    assert isinstance(model, torch.nn.Module) and not model.training and not model.backbone.training
    assert meta["embed_dim"] == 2 and meta["input_size"] == (28, 28) and meta["channels"] == 1
    assert meta["pixel_scale"] == 255 and meta["mean"] == [0.0] and meta["std"] == [1.0]
    assert meta["train_config"]["embed_dim"] == 2 and meta["train_config"]["trainer"]["max_steps"] == 2
    assert meta["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    images = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(images), model.backbone(images)) and model(images).shape == (3, 2)


@pytest.mark.parametrize("backbone", [CONVNET, CONVNET_RGB], ids=["grey", "rgb"])
def test_embed_takes_paths_pil_images_and_tensors_alike(backbone, tmp_path):
    channels, *size = input_shape(backbone)
    model = reid.load_model(write_checkpoint(tmp_path / "m.ckpt", backbone))
    paths = write_images(tmp_path / "images", [f"{i}.png" for i in range(5)])
    expected = reference_embeddings(model.backbone, paths, channels, size)
    pil = [Image.open(path) for path in paths]
    tensors = [torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1) for image in pil]
    for images in (paths, [str(p) for p in paths], pil, tensors):
        got = model.embed(images, batch_size=2)
        assert got.dtype == torch.float32 and got.shape == (5, model.meta["embed_dim"])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    grey_path = tmp_path / "grey.png"
    pil[0].convert("L").save(grey_path)
    grey = torch.from_numpy(np.array(Image.open(grey_path))).unsqueeze(0)  # (1, H, W)
    expected_grey = reference_embeddings(model.backbone, [grey_path], channels, size)
    torch.testing.assert_close(model.embed(grey), expected_grey, atol=1e-5, rtol=1e-5)
    same_size = torch.stack([model.pixels(path) for path in paths])  # one (N, C, H, W) uint8 tensor
    torch.testing.assert_close(model.embed(same_size), expected, atol=1e-5, rtol=1e-5)


def test_other_kinds_of_checkpoint_stop_with_one_paragraph(tmp_path):
    cases = {
        "tensors.pt": {"weights": torch.zeros(2)},
        "foreign.ckpt": {"state_dict": {"encoder.weight": torch.zeros(2)}},
    }
    for name, content in cases.items():
        torch.save(content, tmp_path / name)
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    messages = {
        "tensors.pt": "holds no model weights",
        "foreign.ckpt": "none of a backbone",
        "notes.ckpt": "is not a readable checkpoint",
    }
    for name, expected in messages.items():
        with pytest.raises(ConfigError, match=expected) as caught:
            reid.load_model(tmp_path / name)
        assert "\n" not in str(caught.value) and name in str(caught.value)


def embed_cfg(run_dir: Path, *overrides: str):
    """The real embed config, in-process: output in `run_dir` unless `output=` is given, no workers."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("embed", overrides=[f"paths.output_dir={run_dir}", "num_workers=0", *overrides])


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def test_embed_a_folder_then_only_its_new_images(ckpt, model, tmp_path, capsys):
    images = tmp_path / "images"
    first = write_images(images, ["cat/1.png", "cat/2.png", "dog/1.png", "dog/2.png", "dog/3.png"])
    (images / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    (images / "notes.txt").write_text("not an image: ignored")
    output = tmp_path / "out" / "features.npz"
    args = (f"ckpt_path={ckpt}", f"input={images}", f"output={output}")
    result = embed(embed_cfg(tmp_path / "run1", *args))
    assert result["embedded"] == 5 and result["skipped"] == 1
    assert "Embedded 5 new images" in capsys.readouterr().out
    earlier = read_npz(output)
    assert earlier["paths"].tolist() == [str(p.resolve()) for p in first]
    assert earlier["classes"].tolist() == ["cat", "dog"] and earlier["labels"].tolist() == [0, 0, 1, 1, 1]
    assert earlier["camids"].tolist() == [-1] * 5 and earlier["features"].dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(earlier["features"]), model.embed(first), atol=1e-6, rtol=0)
    skipped = (tmp_path / "out" / "features.skipped.txt").read_text().splitlines()
    assert len(skipped) == 1 and skipped[0].startswith(str((images / "dog" / "broken.jpg").resolve()))

    added = write_images(images, ["ant/1.png", "dog/4.png"], seed=1)
    result = embed(embed_cfg(tmp_path / "run2", *args))
    assert result["embedded"] == 2 and result["skipped"] == 1
    printed = capsys.readouterr().out  # the image skipped before is tried again
    assert "3 to embed, 5 in" in printed and "Embedded 2 new images" in printed
    grown = read_npz(output)
    assert np.array_equal(grown["features"][:5], earlier["features"])  # bit for bit, same order
    assert grown["paths"][:5].tolist() == earlier["paths"].tolist()
    assert grown["paths"][5:].tolist() == [str(p.resolve()) for p in added]
    assert grown["classes"].tolist() == ["cat", "dog", "ant"] and grown["labels"].tolist()[5:] == [2, 1]
    torch.testing.assert_close(torch.from_numpy(grown["features"][5:]), model.embed(added), atol=1e-6, rtol=0)


def test_embed_a_csv_list_keeps_labels_and_cameras(ckpt, tmp_path):
    paths = write_images(tmp_path / "crops", ["a.png", "b.png", "c.png"])
    csv = tmp_path / "list.csv"
    csv.write_text("path,label,camera\ncrops/a.png,7,1\ncrops/b.png,,2\ncrops/c.png,3,\n")
    embed(embed_cfg(tmp_path / "run", f"ckpt_path={ckpt}", f"input={csv}"))
    features = read_npz(tmp_path / "run" / "features.npz")
    assert features["paths"].tolist() == [str(p.resolve()) for p in paths]
    assert features["labels"].tolist() == [7, -1, 3] and features["camids"].tolist() == [1, 2, -1]
    assert features["classes"].tolist() == [] and features["features"].shape == (3, 2)


def test_embed_stops_on_an_empty_folder_or_another_checkpoints_features(ckpt, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no image files"):
        embed(embed_cfg(tmp_path / "run1", f"ckpt_path={ckpt}", f"input={tmp_path / 'empty'}"))
    write_images(tmp_path / "images", ["a.png"])
    output = tmp_path / "features.npz"
    embed(
        embed_cfg(tmp_path / "run2", f"ckpt_path={ckpt}", f"input={tmp_path / 'images'}", f"output={output}")
    )
    before = output.read_bytes()
    other = write_checkpoint(tmp_path / "other.ckpt", CONVNET)  # 8-dimensional, another file
    with pytest.raises(ConfigError, match="made by another checkpoint") as caught:
        embed(
            embed_cfg(
                tmp_path / "run3", f"ckpt_path={other}", f"input={tmp_path / 'images'}", f"output={output}"
            )
        )
    assert "pass a new output=" in str(caught.value).lower() and output.read_bytes() == before
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(DataError, match="not a features file of embed.py"):
        embed(
            embed_cfg(
                tmp_path / "run4", f"ckpt_path={ckpt}", f"input={tmp_path / 'images'}", f"output={foreign}"
            )
        )
    unrecorded = tmp_path / "unrecorded.npz"  # e.g. evaluate.py's features.npz: no checkpoint in its meta
    np.savez(unrecorded, features=np.zeros((1, 2), np.float32))
    with pytest.raises(ConfigError, match="another checkpoint \\('none recorded', 2-dimensional\\)"):
        embed(
            embed_cfg(
                tmp_path / "run5", f"ckpt_path={ckpt}", f"input={tmp_path / 'images'}", f"output={unrecorded}"
            )
        )


def test_embed_s_file_reads_in_search_and_a_file_written_for_it_resumes(ckpt, model, tmp_path):
    """One feature file format: embed.py's file round-trips through `read_features`/`write_features` and
    search.py searches it; a file `write_features` made with the checkpoint's meta is resumed by embed.py."""
    images = tmp_path / "images"
    paths = write_images(images, ["cat/1.png", "cat/2.png", "dog/1.png"])
    output = tmp_path / "features.npz"
    embed(embed_cfg(tmp_path / "run1", f"ckpt_path={ckpt}", f"input={images}", f"output={output}"))
    features = read_features(output)
    assert features.paths.tolist() == [str(p.resolve()) for p in paths] and features.labelled
    assert features.labels.tolist() == [0, 0, 1] and features.classes.tolist() == ["cat", "dog"]
    assert features.meta == {"checkpoint": str(ckpt), "sha256": model.meta["sha256"], "embed_dim": 2}
    torch.testing.assert_close(torch.from_numpy(features.features), model.embed(paths), atol=1e-6, rtol=0)
    copy = tmp_path / "copy.npz"
    write_features(copy, features)
    written, again = read_npz(output), read_npz(copy)
    assert sorted(written) == sorted(again)
    for key, array in written.items():
        assert array.dtype == again[key].dtype and np.array_equal(array, again[key]), key

    result = search(compose_search(tmp_path / "search", f"query={output}", f"gallery={copy}", "top_k=1"))
    with (tmp_path / "search" / "matches.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["gallery_path"] for row in rows] == features.paths.tolist()  # each image finds itself
    assert [row["query_label"] for row in rows] == ["0", "0", "1"]
    assert [row["correct"] for row in rows] == ["True"] * 3
    assert result["num_query"] == 3 and result["rank1"] == 1.0 and result["camera_filter"] is False

    resumed = tmp_path / "resumed.npz"
    meta = {key: model.meta[key] for key in ("checkpoint", "sha256", "embed_dim")}
    first = features.features[:2], features.paths[:2], features.labels[:2], np.full(2, -1)
    write_features(resumed, FeatureSet(*first, meta, np.array(["cat"])))
    embed(embed_cfg(tmp_path / "run2", f"ckpt_path={ckpt}", f"input={images}", f"output={resumed}"))
    grown = read_features(resumed)
    assert np.array_equal(grown.features[:2], features.features[:2])  # bit for bit
    assert grown.paths.tolist() == features.paths.tolist() and grown.meta == features.meta
    assert grown.classes.tolist() == ["cat", "dog"] and grown.labels.tolist() == [0, 0, 1]
    np.testing.assert_allclose(grown.features[2:], features.features[2:], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_embed_and_export_clis_end_to_end(ckpt, model, tmp_path):
    """The README's commands as a user types them: embed a folder, embed it again once it grew, export."""
    images = tmp_path / "images"
    write_images(images, ["a.png", "b.png"])
    (images / "broken.png").write_bytes(b"\x89PNG broken")
    output = tmp_path / "features.npz"
    first = run_script(
        "embed.py",
        f"ckpt_path={ckpt}",
        f"input={images}",
        f"output={output}",
        f"hydra.run.dir={tmp_path / 'e1'}",
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Embedded 2 new images" in first.stdout and "skipped 1 that could not be decoded" in first.stdout
    earlier = read_npz(output)
    write_images(images, ["c.png"], seed=3)
    second = run_script(
        "embed.py",
        f"ckpt_path={ckpt}",
        f"input={images}",
        f"output={output}",
        f"hydra.run.dir={tmp_path / 'e2'}",
    )
    assert second.returncode == 0 and "Embedded 1 new images" in second.stdout
    assert np.array_equal(read_npz(output)["features"][:2], earlier["features"])
    onnx_file = tmp_path / "model.onnx"
    exported = run_script(
        "export.py", f"ckpt_path={ckpt}", f"output={onnx_file}", f"hydra.run.dir={tmp_path / 'x'}"
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    difference = float(
        re.search(r"Max abs difference to PyTorch on a random batch of 2: (\S+)\.\n", exported.stdout)[1]
    )
    assert difference <= 1e-4
    again = run_script(
        "export.py", f"ckpt_path={ckpt}", f"output={onnx_file}", f"hydra.run.dir={tmp_path / 'y'}"
    )
    assert again.returncode == 1 and "already exists and is left untouched" in again.stderr
    assert "Traceback" not in again.stderr
