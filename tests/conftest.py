"""Shared fixtures: one small trained model folder for the scoring, service and export tests."""

from __future__ import annotations

import pytest

from aedetect.data.generate import generate_transactions
from aedetect.data.schema import CREDITCARD


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    from aedetect.detector import AutoencoderDetector

    df = generate_transactions(4000, 0.01, seed=1)
    normals = df[df["Class"] == 0][list(CREDITCARD.features)]
    det = AutoencoderDetector(epochs=3, batch_size=256, log_columns=CREDITCARD.log_columns,
                              periodic_columns=CREDITCARD.periodic_columns, jit_compile=False,
                              seed=0).fit(normals)
    path = tmp_path_factory.mktemp("models") / "model"
    det.save(path)
    return path


@pytest.fixture(scope="session")
def detector(model_dir):
    from aedetect.artifact import load_detector

    return load_detector(model_dir)
