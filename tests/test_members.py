"""An ensemble of networks in one chain (`members`): the members stay apart through training,
each scores like a network of its own, and every reader of the chain gives the same scores."""

from __future__ import annotations

import numpy as np
import pytest

from aedetect.errors import ArtifactError
from aedetect.model.detector import AutoencoderDetector
from aedetect.model.network import build_autoencoder, member_masks
from aedetect.model.scores import contributions, fit_stats
from aedetect.serving.runtime import load_scorer


def _rows(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[:, 1] = 2 * x[:, 0] + 0.1 * x[:, 1]
    return x


@pytest.fixture(scope="module")
def ensemble():
    return AutoencoderDetector(members=3, epochs=4, seed=5).fit(_rows(2000))


def _member_outputs(det, x, k):
    """Member k's reconstruction, computed from its own blocks only."""
    h = x
    layers = [lay.get_weights() for lay in det.model_.layers if lay.__class__.__name__ == "Dense"]
    for i, (kernel, bias) in enumerate(layers):
        rows = slice(None) if i == 0 else slice(k * kernel.shape[0] // 3, (k + 1) * kernel.shape[0] // 3)
        cols = slice(k * kernel.shape[1] // 3, (k + 1) * kernel.shape[1] // 3)
        h = h @ kernel[rows, cols] + bias[cols]
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h


def test_training_keeps_the_members_apart(ensemble):
    start = build_autoencoder(6, ensemble.hidden_units_, members=3, seed=5)
    for (layer, mask), (trained, _) in zip(member_masks(start, 3), member_masks(ensemble.model_, 3),
                                           strict=True):
        kernel = trained.get_weights()[0]
        if mask is not None:  # no weight between two members, before or after training
            assert np.all(layer.get_weights()[0][mask == 0] == 0)
            assert np.all(kernel[mask == 0] == 0)
            assert np.any(kernel[mask == 1] != layer.get_weights()[0][mask == 1])
    assert ensemble.members_ == 3 and ensemble.model_.output_shape[-1] == 18


def test_the_members_start_from_different_weights():
    model = build_autoencoder(6, (8, 4, 8), members=3, seed=0)
    kernel = model.layers[1].get_weights()[0]
    blocks = [kernel[:, k * 8:(k + 1) * 8] for k in range(3)]
    assert not np.allclose(blocks[0], blocks[1]) and not np.allclose(blocks[1], blocks[2])
    limit = np.sqrt(6 / (6 + 8))  # Glorot uniform of one member's first layer
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit


def test_the_score_reads_every_members_residuals(ensemble):
    x = _rows(300, seed=9)
    x[:10] *= 4
    x_pre = ensemble.preprocess(x)
    residuals = np.hstack([_member_outputs(ensemble, x_pre, k) - x_pre for k in range(3)])
    np.testing.assert_allclose(ensemble._residuals(x_pre), residuals, rtol=1e-4, atol=1e-4)
    by_hand = contributions("residual_mahalanobis", ensemble.score_stats_, ensemble._residuals(x_pre))
    score, contrib = ensemble.score_with_contributions(x)
    assert contrib.shape == (300, 6)  # one contribution per feature: the members' summed
    np.testing.assert_allclose(contrib, by_hand.reshape(300, 3, 6).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(contrib.sum(axis=1), score, rtol=1e-12)
    assert ensemble.score_stats_["precision"].shape == (3, 6, 6)  # one precision per member
    # the score is the sum of each member's own Mahalanobis score
    x_val = ensemble.preprocess(_rows(2000)[:200])
    own = 0
    for k in range(3):
        stats = {"mean": ensemble.score_stats_["mean"][6 * k:6 * (k + 1)],
                 "precision": ensemble.score_stats_["precision"][k]}
        r_k = _member_outputs(ensemble, x_val, k) - x_val
        own = own + contributions("residual_mahalanobis", stats, r_k).sum(axis=1)
    np.testing.assert_allclose(ensemble.anomaly_score(_rows(2000)[:200]), own, rtol=1e-3)
    assert score[:10].mean() > np.quantile(score[10:], 0.9)
    assert ensemble.feature_errors(x).shape == (300, 6)


def test_a_one_member_score_is_the_plain_networks():
    x = _rows(1500)
    det = AutoencoderDetector(members=1, epochs=3, seed=1).fit(x)
    r = det._residuals(det.preprocess(x[:50]))
    assert r.shape == (50, 6)
    stats = fit_stats("residual_mahalanobis", det._residuals(det.preprocess(x[:400])))
    assert contributions("residual_mahalanobis", stats, r).shape == (50, 6)


def test_runtime_and_saved_folder_score_an_ensemble_like_the_estimator(ensemble, tmp_path):
    x = _rows(400, seed=3)
    path = ensemble.save(tmp_path / "m")
    scorer = load_scorer(path)
    assert scorer.members_ == 3
    np.testing.assert_allclose(scorer.anomaly_score(x), ensemble.anomaly_score(x), rtol=1e-9)
    np.testing.assert_allclose(scorer.feature_contributions(x), ensemble.feature_contributions(x),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(AutoencoderDetector.load(path).anomaly_score(x), ensemble.anomaly_score(x),
                               rtol=1e-12)


def test_a_folder_whose_network_disagrees_with_its_members_is_refused(ensemble, tmp_path):
    import json

    path = ensemble.save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["training"]["members"] = 2
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"x 2 member\(s\)"):
        load_scorer(path)


def test_a_folder_from_before_ensembles_loads_as_one_network(tmp_path):
    import json

    det = AutoencoderDetector(members=1, epochs=2).fit(_rows(600))
    path = det.save(tmp_path / "old")
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["detector_params"]["members"], manifest["training"]["members"]  # as written then
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded = AutoencoderDetector.load(path)
    assert loaded.members == 1 and loaded.members_ == 1 and load_scorer(path).members_ == 1
    np.testing.assert_allclose(loaded.anomaly_score(_rows(50, 2)), det.anomaly_score(_rows(50, 2)), rtol=1e-12)
