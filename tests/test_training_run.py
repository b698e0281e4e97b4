"""The training run as a library: the checks before training, the metadata a saved model
carries, warm starts compared with their parent, shard folders, the demo's offline data."""

from __future__ import annotations

import pandas as pd
import pytest

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.errors import AedetectError, ArtifactError
from aedetect.model.detector import load_detector
from aedetect.model.thresholds import choose_threshold, fixed
from aedetect.training.config import TrainConfig
from aedetect.training.demo import demo_data, demo_metrics
from aedetect.training.run import check_before_training, check_shard_rule, train_from_shards, train_from_table

SMALL = {"epochs": 1, "batch_size": 256, "hidden_units": [8, 4, 8]}


@pytest.fixture(scope="module")
def table():
    return generate_transactions(3000, 0.03, seed=5)


@pytest.fixture(scope="module")
def run(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "model"
    # The guide's split (the default with a time column is time-ordered): its sizes are checked.
    return train_from_table(table, TrainConfig(seed=2, protocol="guide", **SMALL), CREDITCARD,
                            data_file="gen.csv", out=out)


def test_a_library_trained_and_saved_model_carries_its_metadata(run, tmp_path):
    meta = load_detector(run.out).manifest_.metadata
    assert meta == run.metadata
    assert meta["data_file"] == "gen.csv" and meta["data_fingerprint"].startswith("sha256:")
    assert meta["protocol"] == "guide" and meta["seed"] == 2
    assert meta["split_sizes"] == run.split.sizes() and sum(meta["split_sizes"].values()) == 3000
    assert meta["config"]["detector"]["hidden_units"] == [8, 4, 8]
    assert run.comparison is None
    again = run.save(tmp_path / "again")  # the run saves itself anywhere, metadata included
    assert load_detector(again).manifest_.metadata == meta


def test_the_model_folder_is_checked_before_training(run, table, tmp_path):
    with pytest.raises(AedetectError, match="already exists; pass --overwrite"):
        train_from_table(table, TrainConfig(**SMALL), CREDITCARD, out=run.out)
    (tmp_path / "file").write_text("")
    with pytest.raises(AedetectError, match="is a file, not a folder"):
        check_before_training(tmp_path / "file" / "model")
    with pytest.raises(ArtifactError):
        check_before_training(tmp_path / "new", warm_start=tmp_path)
    check_before_training(run.out, overwrite=True)


def test_a_warm_start_is_compared_with_its_parent_in_the_metadata(model_dir, tmp_path):
    new = generate_transactions(3000, 0.03, seed=6)
    out = tmp_path / "child"
    child = train_from_table(new, TrainConfig(seed=1, epochs=1, batch_size=256), out=out,
                             warm_start=model_dir)
    warm = load_detector(out).manifest_.metadata["warm_start"]
    assert warm == child.comparison and warm["from"] == str(model_dir)
    assert f"the {len(child.split.test):,} test rows of the new data" in warm["compared_on"]
    before, after = warm["models"]
    assert before["model"] == f"before: {model_dir}" and after["model"] == "after (warm start)"
    assert "data_file" not in child.metadata  # a frame, not a file


def test_fixed_owns_its_default_of_ten():
    assert fixed() == 10.0
    t = choose_threshold("fixed")
    assert (t.value, t.params, t.source) == (10.0, {"value": 10.0}, "given")
    assert choose_threshold("fixed", value=None).value == 10.0
    assert choose_threshold("fixed", value=3).value == 3.0


def test_shard_folders_take_the_rules_that_need_no_rows(tmp_path):
    with pytest.raises(ValueError, match="normal_percentile or fixed"):
        check_shard_rule(TrainConfig(threshold_rule="best_f1"))
    df = generate_transactions(2000, 0.0, seed=3)
    for i in range(2):
        df.iloc[i * 1000:(i + 1) * 1000].to_parquet(tmp_path / f"part-{i}.parquet")
    run = train_from_shards(tmp_path, TrainConfig(threshold_rule="fixed", **SMALL), CREDITCARD, out=tmp_path / "m")
    assert run.detector.threshold.rule == "fixed" and run.detector.threshold_ == 10.0
    meta = load_detector(tmp_path / "m").manifest_.metadata
    assert meta["shards"] == 2 and meta["rows_in_shards"] == 2000 and meta["data_folder"] == str(tmp_path)


def test_the_demo_generates_data_when_the_real_file_cannot_be_fetched(tmp_path):
    def offline():
        raise AedetectError("no network")

    demo = demo_data("creditcard", tmp_path, offline_rows=500, seed=1, fetch=offline)
    assert demo.fallback == "no network" and demo.data == str(tmp_path / "generated.csv")
    df = pd.read_csv(demo.data)
    assert len(df) == 500 and df["Class"].sum() == 5
    assert demo_data("creditcard", tmp_path, fetch=lambda: tmp_path / "real.csv").data == str(tmp_path / "real.csv")
    assert demo_data("mine.csv", tmp_path) == demo_data("mine.csv", tmp_path, fetch=offline)


def test_demo_metrics_are_the_test_rows_of_the_run(run, table):
    m = demo_metrics(run, table)
    assert m["n_test"] == len(run.split.test) and m["protocol"] == "guide" and m["seed"] == 2
