"""On the real ULB file (fetched into the cache on first use). Run with `make test-slow`."""

import pytest

from aedetect.config import TrainConfig
from aedetect.data.fetch import fetch_creditcard
from aedetect.data.io import read_table
from aedetect.train import evaluate_detector, train_detector

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ulb():
    return read_table(fetch_creditcard())


def test_real_file_shape(ulb):
    assert ulb.shape == (284_807, 31) and int(ulb["Class"].sum()) == 492


@pytest.mark.parametrize("protocol", ["guide", "time"])
def test_quality_floors_on_real_data(ulb, protocol):
    result = train_detector(ulb, TrainConfig(protocol=protocol, seed=0, epochs=20))
    m = evaluate_detector(result.detector, ulb, result.split.test)
    if protocol == "guide":
        assert (m["n_test"], m["n_test_fraud"]) == (34_000, 480)
    assert m["roc_auc"] > 0.90
    assert m["pr_auc"] > 0.40
    assert m["mean_mse_fraud"] > 10 * m["mean_mse_normal"]
