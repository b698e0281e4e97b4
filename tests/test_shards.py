"""Training from a folder of Parquet/CSV shards, streamed, against the in-memory fit."""

import numpy as np
import pandas as pd
import pytest

from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
from aedetect.data.generate import generate_transactions
from aedetect.data.shards import _held_out, iter_blocks, shard_data, shard_files
from aedetect.errors import DataError
from aedetect.model.preprocessing import Preprocessor

FEATURES = list(CREDITCARD.features)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    df = generate_transactions(6000, 0.02, seed=4)
    for i in range(4):
        df.iloc[i * 1500:(i + 1) * 1500].to_parquet(d / f"part-{i:05d}.parquet")
    (d / "_SUCCESS").touch()
    return d, df


def test_validation_is_seeded_bounded_and_the_same_from_csv(shards, tmp_path):
    d, df = shards
    a = shard_data(d, FEATURES, "Class", seed=1, max_validation=200, block_rows=700)
    b = shard_data(d, FEATURES, "Class", seed=1, max_validation=200, block_rows=700)
    np.testing.assert_array_equal(a.validation, b.validation)
    assert 120 < len(a.validation) < 280  # about 200 of 5,880 normals
    for i in range(2):
        df.iloc[i * 3000:(i + 1) * 3000].to_csv(tmp_path / f"part-{i}.csv", index=False)
    c = shard_data(tmp_path, FEATURES, "Class", seed=1, validation_fraction=0.2, block_rows=700)
    assert c.n_rows == 6000 and 900 < len(c.validation) < 1450


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no .parquet or .csv shards"),
    (lambda p: pd.DataFrame({"Time": [1.0]}).to_parquet(p / "part-0.parquet"), r"missing column\(s\)"),
    (lambda p: generate_transactions(50, 0.0, seed=0).assign(V5="x").to_csv(p / "a.csv", index=False),
     "a.csv: row 1: column 'V5'"),
])
def test_bad_shard_folders_name_the_problem(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        shard_data(tmp_path, FEATURES, "Class")


def test_cli_trains_from_a_shard_folder_like_the_in_memory_fit(shards, tmp_path):
    """`aedetect train --data folder/` streams the shards; its preprocessing statistics equal an
    in-memory fit on the same training rows, and the held-out rows are the validation set."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.model.detector import load_detector

    d, df = shards
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["train", "--data", str(d), "--out", str(out), "--epochs", "1",
                                      "--hidden-units", "8,4,8", "--set", "batch_size=256", "--seed", "3"])
    assert result.exit_code == 0, result.output
    det = load_detector(out)
    assert det.manifest_.metadata["shards"] == 4
    train = np.concatenate([x[~_held_out(3, i, b, len(x), 0.1)]
                            for i, b, x in iter_blocks(shard_files(d), FEATURES, "Class")])
    assert det.n_train_ == len(train) and det.n_train_ + det.n_validation_ == (df["Class"] == 0).sum()
    ref = Preprocessor(FEATURES, LOG_COLUMNS, PERIODIC_COLUMNS).fit(train)
    np.testing.assert_allclose(det.preprocessor_.mean_, ref.mean_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(det.preprocessor_.scale_, ref.scale_, rtol=1e-6)
    assert np.isfinite(det.threshold_) and det.threshold.rule == "normal_percentile"

    bad = CliRunner().invoke(app, ["train", "--data", str(d), "--out", str(tmp_path / "m2"),
                                   "--threshold-rule", "best_f1"])
    assert bad.exit_code != 0 and "normal_percentile or fixed" in str(bad.exception)
