"""Issue 22 research: a deviation network (Pang, Shen and van den Hengel, KDD 2019) on the
labelled frauds, the one lever of the issue's list not tried before. A small scoring network
learns from the few labelled frauds and the training period's normals with the deviation loss
(normal rows' scores pulled to a N(0, 1) reference, frauds pushed at least 5 deviations above
it), on the preprocessed features and the autoencoder's log score. Beside it: the head on raw
features alone, the product's prior blend, and the deviation network's own prior blend with
the autoencoder. ULB time protocol, the label curve's cached autoencoders and label draws;
PR-AUC on the test period.

  cd benchmarks && python research/devnet.py --seeds 0,1,2 --labels 25,50,100
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402
from common import real_data  # noqa: E402
from label_draws import head, seed_draws, z  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from aedetect.data.creditcard import CREDITCARD  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--seeds", default="0,1,2")
ap.add_argument("--labels", default="25,50,100")
ap.add_argument("--epochs", type=int, default=30)
ap.add_argument("--out", default="/tmp/devnet.jsonl")
args = ap.parse_args()
df = real_data()[0]
X, y = df[list(CREDITCARD.features)], df[CREDITCARD.label].to_numpy().astype(int)


def devnet(m, yy, seed, epochs, batch=512, steps=20, margin=5.0):
    """The deviation network's scores of every row of `m`, trained on rows `m` with labels `yy`
    (fitted on the rows given; each batch half frauds, half normals)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((m.shape[1],))
    h = tf.keras.layers.Dense(20, activation="relu", kernel_regularizer=tf.keras.regularizers.l2(0.01))(inp)
    out = tf.keras.layers.Dense(1)(h)
    model = tf.keras.Model(inp, out)
    opt = tf.keras.optimizers.RMSprop(1e-3)
    ref = np.random.default_rng(seed).normal(size=5000)
    mu, sd = float(ref.mean()), float(ref.std())
    pos, neg = np.flatnonzero(yy == 1), np.flatnonzero(yy == 0)
    rng = np.random.default_rng(seed)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            dev = (tf.squeeze(model(xb, training=True), 1) - mu) / sd
            loss = tf.reduce_mean((1 - yb) * tf.abs(dev) + yb * tf.maximum(0.0, margin - dev))
            loss += tf.add_n(model.losses)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables,
                                strict=True))

    for _ in range(epochs):
        for _ in range(steps):
            idx = np.concatenate([rng.choice(pos, batch // 2), rng.choice(neg, batch // 2)])
            step(tf.constant(m[idx], tf.float32), tf.constant(yy[idx], tf.float32))
    return model


for seed in map(int, args.seeds.split(",")):
    det, test, fit, raw, ae, draws = seed_draws(df, seed, args.labels)
    m = np.column_stack([raw, (ae - np.median(ae[fit])) / ae[fit].std()]).astype("float32")
    for lab, n, keep in draws:
        nref = keep[y[keep] == 0]
        w = n / (n + 25)
        lo = head(det).fit(raw[keep], y[keep]).decision_function(raw)
        net = devnet(m[keep], y[keep], seed, args.epochs)
        dv = np.asarray(net.predict(m, batch_size=65536, verbose=0)).ravel()
        row = {"seed": seed, "labels": lab, "ae": float(average_precision_score(y[test], ae[test])),
               "head_raw": float(average_precision_score(y[test], lo[test])),
               "blend_raw": float(average_precision_score(
                   y[test], w * z(lo[nref], lo[test]) + (1 - w) * z(ae[nref], ae[test]))),
               "devnet": float(average_precision_score(y[test], dv[test])),
               "blend_devnet": float(average_precision_score(
                   y[test], w * z(dv[nref], dv[test]) + (1 - w) * z(ae[nref], ae[test]))),
               "head_plus_devnet": float(average_precision_score(
                   y[test], z(lo[nref], lo[test]) + z(dv[nref], dv[test]))),
               "load": os.getloadavg()[0]}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
