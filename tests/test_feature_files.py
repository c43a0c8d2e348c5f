"""The one feature file format (`reid.retrieval.feature_files`): what a file with only some keys reads as,
and the paragraph a malformed key stops with."""

import numpy as np
import pytest

from reid.errors import DataError
from reid.retrieval.feature_files import FeatureSet, read_features, write_features


def test_missing_keys_read_as_unknown_and_written_ones_round_trip(tmp_path):
    bare = tmp_path / "bare.npz"
    np.savez(bare, features=np.arange(6, dtype=np.float64).reshape(3, 2))
    read = read_features(bare)
    assert read.features.dtype == np.float32 and read.paths.tolist() == [
        "bare.npz#0",
        "bare.npz#1",
        "bare.npz#2",
    ]
    assert read.labels.tolist() == read.camids.tolist() == [-1] * 3 and not read.labelled
    assert read.classes.tolist() == [] and read.meta == {}

    full = FeatureSet(read.features, np.array(["a", "b", "c"]), np.array([1, 0, 1]), np.array([2, 2, 5]),
                      {"embed_dim": 2}, np.array(["cat", "dog"]))  # fmt: skip
    write_features(tmp_path / "full.npz", full)
    again = read_features(tmp_path / "full.npz")
    assert np.array_equal(again.features, full.features) and again.paths.tolist() == ["a", "b", "c"]
    assert again.labels.tolist() == [1, 0, 1] and again.camids.tolist() == [2, 2, 5] and again.labelled
    assert again.classes.tolist() == ["cat", "dog"] and again.meta == {"embed_dim": 2}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"labels": np.array([0.5, 1.0])}, "'labels' must be \\(2,\\) integers"),
        ({"classes": np.array([[1, 2]])}, "'classes' must be a \\(K,\\) array of strings"),
        ({"paths": np.array(["a"])}, "'paths' has 1 entries but 'features' has 2 rows"),
    ],
    ids=["float-labels", "numeric-classes", "short-paths"],
)
def test_a_malformed_key_stops_naming_the_file_and_the_key(tmp_path, extra, message):
    path = tmp_path / "bad.npz"
    np.savez(path, features=np.zeros((2, 3), np.float32), **extra)
    with pytest.raises(DataError, match=message) as error:
        read_features(path)
    assert str(path) in str(error.value)
