"""Slow: training on the real MNIST files (`pytest -m slow`; skipped when ../shared/data is absent)."""

from pathlib import Path

import pytest

from reid.tasks.train import train
from tests.helpers.configs import compose_train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"real MNIST files not found in {DATA}"),
]


@pytest.mark.parametrize(
    ("dataset", "folder", "floor"), [("mnist", "mnist", 0.93), ("fashion_mnist", "fashion-mnist", 0.7)]
)
def test_fast_recipe_learns_real_data_in_150_steps(tmp_path, dataset, folder, floor):
    """experiment=mnist_fast on the official files: 150 steps already give a useful 16-D embedding."""
    cfg = compose_train(
        tmp_path / "run",
        "experiment=mnist_fast",
        f"dataset={dataset}",
        f"dataset.root={DATA / folder}",
        "dataset.download=false",
        "dataset.batches_per_epoch=150",
        "dataset.knn_reference_size=5000",
        "embed_dim=16",
        "trainer.max_epochs=1",
    )
    metrics = train(cfg)
    assert metrics["val/precision_at_1"] > floor, metrics  # chance: 0.1
    assert metrics["val/knn_accuracy"] > floor, metrics
