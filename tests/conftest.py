"""Shared fixtures: generated data and small trained detectors (session-wide: training costs)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS  # noqa: E402
from aedetect.data.generate import generate_transactions  # noqa: E402

FEATURES = list(CREDITCARD.features)


@pytest.fixture(scope="session")
def frame():
    """8,000 generated transactions, 2% anomalies."""
    return generate_transactions(8_000, fraud_rate=0.02, seed=7)


@pytest.fixture(scope="session")
def fitted(frame):
    """A small detector trained on the normal rows of `frame`."""
    from aedetect import AutoencoderDetector

    normals = frame[frame["Class"] == 0][FEATURES]
    det = AutoencoderDetector(hidden_units=(16, 6, 16), epochs=8, batch_size=128,
                              log_columns=["Amount"], periodic_columns=[("Time", 86400.0)], seed=1)
    return det.fit(normals)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A saved model folder for the scoring, service and export tests."""
    from aedetect.model.detector import AutoencoderDetector

    df = generate_transactions(4000, 0.01, seed=1)
    normals = df[df["Class"] == 0][FEATURES]
    det = AutoencoderDetector(epochs=3, batch_size=256, log_columns=LOG_COLUMNS,
                              periodic_columns=PERIODIC_COLUMNS, jit_compile=False,
                              seed=0).fit(normals)
    path = tmp_path_factory.mktemp("models") / "model"
    det.save(path)
    return path


@pytest.fixture(scope="session")
def single_model_dir(tmp_path_factory):
    """`model_dir`'s model as one network (`members=1`; the defaults train 3), saved: exports
    and runtimes read both layouts."""
    from aedetect.model.detector import AutoencoderDetector

    df = generate_transactions(4000, 0.01, seed=1)
    det = AutoencoderDetector(epochs=3, batch_size=256, log_columns=LOG_COLUMNS, members=1,
                              periodic_columns=PERIODIC_COLUMNS, jit_compile=False,
                              seed=0).fit(df[df["Class"] == 0][FEATURES])
    return det.save(tmp_path_factory.mktemp("models") / "single")


@pytest.fixture(scope="session")
def guide_model_dir(tmp_path_factory):
    """The guide's one network (tanh, MSE score), saved: the other activation and score kind."""
    from aedetect.model.detector import AutoencoderDetector

    df = generate_transactions(3000, 0.0, seed=2)
    det = AutoencoderDetector((16, 6, 16), "tanh", epochs=2, score_type="mse", jit_compile=False, members=1,
                              log_columns=LOG_COLUMNS,
                              periodic_columns=PERIODIC_COLUMNS).fit(df[FEATURES])
    return det.save(tmp_path_factory.mktemp("models") / "guide")


@pytest.fixture(scope="session")
def model_with_reference(model_dir, tmp_path_factory):
    """`model_dir`'s numbers-only model saved again with a drift reference (reference.json)."""
    from aedetect.model.detector import load_detector
    from aedetect.monitoring.reference import build_reference

    det = load_detector(model_dir)
    df = generate_transactions(3000, 0.01, seed=5)
    det.reference_ = build_reference(det, df[df["Class"] == 0], anomalies=df[df["Class"] == 1],
                                     anomaly_rows=(int(df["Class"].sum()), len(df)), time_column="Time")
    return det.save(tmp_path_factory.mktemp("drift") / "model")


@pytest.fixture(scope="session")
def detector(model_dir):
    from aedetect.model.detector import load_detector

    return load_detector(model_dir)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _postgres_database(admin_url: str):
    """A fresh database on the test PostgreSQL server (dropped afterwards)."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"aedetect_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def review_url(request, tmp_path):
    """An empty review store URL: a SQLite file, then a new database on the PostgreSQL server
    named by AEDETECT_TEST_POSTGRES_URL (`.ci/postgres` starts one). Without that variable the
    PostgreSQL case skips, unless AEDETECT_REQUIRE_POSTGRES=1 (CI), where it fails."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'alerts.db'}"
        return
    admin = os.environ.get("AEDETECT_TEST_POSTGRES_URL")
    if not admin:
        if os.environ.get("AEDETECT_REQUIRE_POSTGRES") == "1":
            pytest.fail("AEDETECT_TEST_POSTGRES_URL is not set (start a server with .ci/postgres)")
        pytest.skip("no PostgreSQL server: export AEDETECT_TEST_POSTGRES_URL=$(.ci/postgres | tail -1)")
    yield from _postgres_database(admin)
