import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.tfdata import load_tfrecords, read_tfrecords
from aedetect.training.config import TrainConfig
from aedetect.training.workflow import evaluate_detector, split_frame, train_detector, write_split_tfrecords

FEATURES = list(CREDITCARD.features)


def test_shards_round_trip(tmp_path, frame):
    split = split_frame(frame, TrainConfig(seed=0), CREDITCARD)
    write_split_tfrecords(frame, split, tmp_path, CREDITCARD)
    assert len(list(tmp_path.glob("train-*.tfrecord"))) >= 1
    x, y = load_tfrecords(tmp_path, "test")
    np.testing.assert_allclose(x, frame.iloc[split.test][FEATURES].to_numpy(), rtol=1e-6)
    np.testing.assert_array_equal(y, frame.iloc[split.test]["Class"].to_numpy())
    rows = read_tfrecords(tmp_path, "train", seed=3)
    assert rows.element_spec.shape == tf.TensorShape([30])
    assert sum(1 for _ in rows) == len(split.train)


def test_streamed_training_is_seeded_and_as_good_as_in_memory(tmp_path, frame):
    cfg = TrainConfig(seed=2, epochs=6, batch_size=128, hidden_units=[16, 6, 16])
    mem = train_detector(frame, cfg, CREDITCARD)
    cfg_tf = cfg.model_copy(update={"input_pipeline": "tfrecord"})
    a = train_detector(frame, cfg_tf, CREDITCARD, work_dir=tmp_path / "a")
    b = train_detector(frame, cfg_tf, CREDITCARD, work_dir=tmp_path / "b")
    x = frame.iloc[mem.split.test][FEATURES]
    np.testing.assert_array_equal(a.detector.anomaly_score(x), b.detector.anomaly_score(x))
    y = frame.iloc[mem.split.test]["Class"]
    auc_mem = roc_auc_score(y, mem.detector.anomaly_score(x))
    auc_tf = roc_auc_score(y, a.detector.anomaly_score(x))
    assert auc_mem > 0.9 and auc_tf > 0.9
    assert abs(auc_mem - auc_tf) < 0.03  # same quality within seed-to-seed noise
    # streaming fitted the same preprocessing statistics as the in-memory path
    np.testing.assert_allclose(a.detector.preprocessor_.mean_, mem.detector.preprocessor_.mean_,
                               rtol=1e-4, atol=1e-5)
    m = evaluate_detector(a.detector, frame, mem.split.test)
    assert m["roc_auc"] == auc_tf  # the evaluation scored exactly the test rows of the split
