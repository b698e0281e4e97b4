import json

import numpy as np
import pytest

from aedetect import AutoencoderDetector
from aedetect.data.creditcard import CREDITCARD
from aedetect.errors import ArtifactError
from aedetect.model.detector import load_detector
from aedetect.model.thresholds import Threshold
from aedetect.store.folder import MANIFEST_FILE, MODEL_FILE, read_manifest

FEATURES = list(CREDITCARD.features)


@pytest.fixture
def saved(tmp_path, fitted):
    return fitted.save(tmp_path / "model", metadata={"note": "test"})


def test_round_trip_gives_identical_scores(saved, fitted, frame):
    loaded = AutoencoderDetector.load(saved)
    x = frame[FEATURES]
    np.testing.assert_array_equal(loaded.anomaly_score(x), fitted.anomaly_score(x))
    assert loaded.threshold == fitted.threshold
    assert loaded.get_params() == fitted.get_params()
    assert loaded.feature_names_out_ == fitted.feature_names_out_


def test_manifest_contents(saved, fitted):
    m = json.loads((saved / MANIFEST_FILE).read_text())
    assert m["input_schema"]["feature_names"] == FEATURES
    assert m["threshold"]["rule"] == "normal_percentile"
    assert m["training"]["data_fingerprint"].startswith("sha256:")
    assert set(m["versions"]) >= {"aedetect", "tensorflow", "keras", "numpy"}
    assert set(m["files"]) == {MODEL_FILE, "weights.npz"} and len(m["files"][MODEL_FILE]) == 64
    assert m["metadata"] == {"note": "test"}
    assert sorted(p.name for p in saved.iterdir()) == [MANIFEST_FILE, MODEL_FILE, "weights.npz"]
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_changed_model_file_is_refused(saved):
    with open(saved / MODEL_FILE, "ab") as f:
        f.write(b"x")
    with pytest.raises(ArtifactError, match="sha256 .* does not match the manifest"):
        load_detector(saved)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format_version=99), "format_version 99 is not supported"),
    (lambda m: m.update(format="pickle"), "format is 'pickle'"),
    (lambda m: m.pop("threshold"), "field 'threshold': Field required"),
    (lambda m: m["files"].update({"../evil": "0" * 64}), "points outside the folder"),
])
def test_bad_manifest_is_refused(saved, edit, message):
    m = json.loads((saved / MANIFEST_FILE).read_text())
    edit(m)
    (saved / MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=message):
        load_detector(saved)


def test_missing_pieces_are_refused(tmp_path, saved):
    with pytest.raises(ArtifactError, match="no such model folder"):
        load_detector(tmp_path / "nope")
    (saved / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_manifest(saved)
    (saved / MANIFEST_FILE).unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_detector(saved)


def test_existing_folder_needs_overwrite(saved, fitted, frame):
    with pytest.raises(ArtifactError, match="already exists"):
        fitted.save(saved)
    original = fitted.threshold
    fitted.threshold = Threshold("fixed", 3.0, {"value": 3.0}, "given")
    try:
        fitted.save(saved, overwrite=True)
        assert load_detector(saved).threshold_ == 3.0
    finally:
        fitted.threshold = original  # keep the session fixture intact
