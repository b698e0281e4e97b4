"""The `"auto"` rules of aedetect.model.defaults on small shapes, and a small fit with them."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from aedetect.model.defaults import (
    auto_architecture,
    auto_batch_size,
    auto_code_size,
    auto_epochs,
    auto_jit,
    auto_width,
    passes_per_epoch,
)
from aedetect.model.detector import AutoencoderDetector


@pytest.mark.parametrize(("n_features", "width"), [(1, 16), (6, 16), (12, 32), (30, 64),
                                                   (31, 64), (57, 128), (166, 128)])
def test_width_is_twice_the_features_within_bounds(n_features, width):
    assert auto_width(n_features) == width


def test_code_follows_the_principal_components():
    rng = np.random.default_rng(0)
    low_rank = rng.normal(size=(2000, 3)) @ rng.normal(size=(3, 20)) + 0.01 * rng.normal(size=(2000, 20))
    assert auto_code_size(low_rank) == 3
    assert auto_code_size(rng.normal(size=(2000, 30))) == 16  # isotropic: the cap
    assert auto_code_size(rng.normal(size=(500, 3))) == 3  # never wider than the data
    assert auto_architecture(2000, 20, low_rank) == (32, 16, 3, 16, 32)
    # The credit-card shape keeps the network it was researched with.
    assert auto_architecture(225_510, 31, rng.normal(size=(2000, 31))) == (64, 32, 16, 32, 64)


@pytest.mark.parametrize(("n_rows", "batch"), [(10, 32), (300, 32), (1000, 32), (5000, 64),
                                               (20_000, 256), (225_510, 2048), (10**7, 2048)])
def test_batch_gives_about_a_hundred_updates_per_pass(n_rows, batch):
    assert auto_batch_size(n_rows) == batch


def test_small_sets_are_passed_over_several_times_per_epoch():
    assert passes_per_epoch(300, 32) == 5  # 10 steps a pass
    assert passes_per_epoch(1000, 32) == 2
    assert passes_per_epoch(225_510, 2048) == 1
    assert auto_epochs(300) == 10 and auto_epochs(60_000) == 60 and auto_epochs(225_510) == 100
    assert not auto_jit(1000) and auto_jit(225_510)


def test_auto_fit_on_a_thousand_rows_finds_the_anomalies():
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(4, 12))
    normal = rng.normal(size=(1000, 4)) @ basis + 0.05 * rng.normal(size=(1000, 12))
    test_normal = rng.normal(size=(300, 4)) @ basis + 0.05 * rng.normal(size=(300, 12))
    off = rng.normal(size=(30, 4)) @ basis + rng.normal(size=(30, 12))  # off the 4-dim plane
    det = AutoencoderDetector(seed=0).fit(normal)
    width, half, code = det.hidden_units_[:3]
    assert (width, half) == (32, 16) and 2 <= code <= 4  # 12 features on a 4-dim plane
    assert det.batch_size_ == 32 and det.passes_per_epoch_ == 2 and not det.jit_compile_
    assert 1 <= det.n_epochs_ <= det.epochs_ == 10
    y = np.r_[np.zeros(300), np.ones(30)]
    assert average_precision_score(y, det.anomaly_score(np.vstack([test_normal, off]))) > 0.9



def test_three_networks_by_default():
    det = AutoencoderDetector(epochs=1).fit(np.random.default_rng(0).normal(size=(400, 4)))
    assert det.members == 3 and det.members_ == 3 and det.model_.output_shape[-1] == 12
    assert det.network_.startswith("3 networks ")
