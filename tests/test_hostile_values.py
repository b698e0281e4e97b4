"""Extreme values: one rule everywhere, never a NaN score, never a silent pass.

A finite value beyond the range the float32 network can compute with (|value| > 1e15, or a
value that many standard deviations from the training mean) is refused as a bad value with its
reason, by the readers, the Python API, the batch scorer and the service alike.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.io import read_table, write_table
from aedetect.data.schema import MAX_ABS_VALUE
from aedetect.errors import DataError
from aedetect.model.scores import contributions
from aedetect.serving.batch import bad_rows_path, score_file

FEATURES = list(CREDITCARD.features)


@pytest.fixture
def small(frame):
    return frame.head(40).reset_index(drop=True).copy()


def test_reader_refuses_huge_value_with_file_column_row(small, tmp_path):
    small.loc[3, "V1"] = 1e200
    src = write_table(small, tmp_path / "huge.csv")
    with pytest.raises(DataError, match=r"huge\.csv: column 'V1', row 4: value 1e\+200 is out of range"):
        read_table(src)


def test_python_api_refuses_huge_value(detector, small):
    x = small[FEATURES].copy()
    x.loc[5, "Amount"] = -1e30
    with pytest.raises(DataError, match=r"column 'Amount', row 6: value -1e\+30 is out of range"):
        detector.anomaly_score(x)


def test_value_far_from_training_mean_is_refused_not_nan(detector, small):
    pre = detector.preprocessor_
    j = FEATURES.index("V2")
    lo, hi = pre.limits()
    assert hi[j] <= MAX_ABS_VALUE
    x = small[FEATURES].copy()  # named columns, as the detector was fitted (no scikit-learn warning)
    x.iloc[0, j] = hi[j]  # the largest accepted value scores, finite and flagged
    s = detector.anomaly_score(x)
    assert np.isfinite(s).all() and s[0] > detector.threshold_
    x.iloc[0, j] = np.nextafter(hi[j], np.inf) * 1.01
    with pytest.raises(DataError, match=r"column 'V2', row 1: value"):
        detector.anomaly_score(x)


def test_contributions_never_return_nan():
    r = np.array([[0.1, 0.2], [np.nan, 0.1], [np.inf, 0.0]])
    with pytest.raises(DataError, match=r"row 2: the score is not finite.*2 such row"):
        contributions("mse", {}, r)


def test_batch_scorer_error_and_skip_modes(detector, small, tmp_path):
    small.loc[2, "V1"] = 1e200
    src = write_table(small, tmp_path / "in.csv")
    with pytest.raises(DataError, match=r"in\.csv: row 3: column 'V1': value 1e\+200 is out of range"):
        score_file(detector, src, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()
    s = score_file(detector, src, tmp_path / "o.csv", on_bad_rows="skip")
    out = pd.read_csv(s.output)
    assert s.rows_skipped == 1 and 3 not in set(out["row"]) and np.isfinite(out["score"]).all()
    side = pd.read_csv(bad_rows_path(tmp_path / "o.csv"))
    assert list(side["row"]) == [3] and "out of range" in side["reason"][0]


def test_service_refuses_huge_value_with_422(model_dir, small):
    from fastapi.testclient import TestClient

    from aedetect.serving.app import create_app

    client = TestClient(create_app(model_dir))
    tx = {k: float(v) for k, v in small[FEATURES].iloc[0].items()}
    tx["V1"] = 1e200
    r = client.post("/v1/score", content=json.dumps({"transactions": [tx]}),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "V1" in r.text
    # in range for the field but too far from the training mean: refused too, never "score": null
    tx["V1"] = float(np.nextafter(MAX_ABS_VALUE, 0))
    tx["Time"] = 0.0
    r = client.post("/v1/score", json={"transactions": [tx]})
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        res = r.json()["results"][0]
        assert res["score"] is not None and res["flag"] is True


def test_missing_timestamp_in_a_later_chunk_names_file_and_row(frame, tmp_path):
    from aedetect.data.infer import infer_schema
    from aedetect.model.detector import AutoencoderDetector

    df = frame.head(400).drop(columns=["Time", "Class"]).copy()
    df["ts"] = (pd.Timestamp("2024-01-01") + pd.to_timedelta(frame["Time"].head(400), unit="s")).astype(str)
    det = AutoencoderDetector((8, 4, 8), epochs=1, jit_compile=False,
                              schema=infer_schema(df, time_column="ts")).fit(df)
    df.loc[250, "ts"] = None  # data row 251, in the third chunk of 100
    src = tmp_path / "gap.csv"
    df.to_csv(src, index=False)
    with pytest.raises(DataError, match=r"gap\.csv: row 251: column 'ts': empty value \(pass --on-bad-rows skip"):
        score_file(det, src, tmp_path / "o.csv", chunk_rows=100)
    s = score_file(det, src, tmp_path / "o.csv", chunk_rows=100, on_bad_rows="skip")
    assert s.rows_skipped == 1 and s.rows_scored == 399
    side = pd.read_csv(bad_rows_path(tmp_path / "o.csv"))
    assert list(side["row"]) == [251] and side["reason"][0] == "column 'ts': empty value"
