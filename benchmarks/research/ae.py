"""Train autoencoder(s) on normal rows and evaluate many reconstruction-based
scores at once. Usage example:
  python ae.py --tag base --arch 64,32,16 --act relu --epochs 100 --patience 5 --seeds 0,1,2
Results (one JSON line per seed x score) appended to results/<tag>.jsonl."""
import argparse
import time

import numpy as np
from common import (
    RESULTS,
    Maha,
    append_results,
    evaluate,
    load,
    prepare,
    set_tf_single_thread,
    split_guide,
    split_time,
    zlog,
)

ap = argparse.ArgumentParser()
ap.add_argument("--tag", required=True)
ap.add_argument("--protocol", default="guide", choices=["guide", "time", "synth"])
ap.add_argument("--seeds", default="0,1,2")
ap.add_argument("--feat", default="raw")
ap.add_argument("--scaler", default="standard")
ap.add_argument("--arch", default="64,32,16")
ap.add_argument("--act", default="relu")
ap.add_argument("--noise", type=float, default=0.0)
ap.add_argument("--dropout", type=float, default=0.0)
ap.add_argument("--l2", type=float, default=0.0)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--batch", type=int, default=2048)
ap.add_argument("--epochs", type=int, default=100)
ap.add_argument("--patience", type=int, default=5)  # 0 = no early stopping
ap.add_argument("--ens", type=int, default=1)
ap.add_argument("--synth_anom", default="offmanifold")
args = ap.parse_args()

tf = set_tf_single_thread()
import keras
from keras import layers


def build(d, arch, act, noise, dropout, l2, lr):
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    inp = keras.Input((d,))
    h = layers.GaussianNoise(noise)(inp) if noise > 0 else inp
    for w in arch[:-1]:
        h = layers.Dense(w, activation=act, kernel_regularizer=reg)(h)
        if dropout > 0:
            h = layers.Dropout(dropout)(h)
    z = layers.Dense(arch[-1], activation=act, kernel_regularizer=reg, name="code")(h)
    h = z
    for w in reversed(arch[:-1]):
        h = layers.Dense(w, activation=act, kernel_regularizer=reg)(h)
        if dropout > 0:
            h = layers.Dropout(dropout)(h)
    out = layers.Dense(d, activation="linear")(h)
    ae = keras.Model(inp, out)
    enc = keras.Model(inp, z)
    ae.compile(optimizer=keras.optimizers.Adam(lr), loss="mse", jit_compile=True)
    return ae, enc


def get_data(seed):
    if args.protocol == "synth":
        from synth import make_synth
        return make_synth(seed, kind=args.synth_anom)
    Xraw, y = load()
    idx = split_guide(y, seed) if args.protocol == "guide" else split_time(y, Xraw)
    D = prepare(Xraw, idx, args.feat, args.scaler)
    return D, y[idx["sel"]], y[idx["test"]]


arch = [int(a) for a in args.arch.split(",")]
cfg = {k: v for k, v in vars(args).items() if k not in ("seeds", "tag")}
out_path = f"{RESULTS}/{args.tag}.jsonl"
for seed in [int(s) for s in args.seeds.split(",")]:
    D, ysel, ytest = get_data(seed)
    d = D["train"].shape[1]
    rows = []
    ex = dict(seed=seed, tag=args.tag, **cfg)
    # ---- baseline: input-space Mahalanobis (mean/cov on train normals)
    mi = Maha().fit(D["train"])
    im = {k: mi.score(D[k]) for k in ("val", "sel", "test")}
    rows.append(evaluate("input_maha", im["val"], im["sel"], im["test"], ysel, ytest, ex))
    # ---- train ensemble members
    recs = {k: [] for k in ("val", "sel", "test")}
    codes = {k: [] for k in ("val", "sel", "test")}
    t0 = time.time()
    epochs_run = []
    for m in range(args.ens):
        keras.utils.set_random_seed(1000 * seed + m)
        ae, enc = build(d, arch, args.act, 0.0, args.dropout, args.l2, args.lr)
        if args.noise > 0:
            # Denoising: keras GaussianNoise is ~10x slower on CPU under XLA, so the
            # noise is drawn in numpy each epoch (fresh N(0, noise^2) per element) and
            # early stopping (val_loss on clean val, patience, restore best) is done by hand.
            nrng = np.random.default_rng(1000 * seed + m)
            best, best_w, wait, ep = np.inf, None, 0, 0
            for ep in range(1, args.epochs + 1):
                Xn = D["train"] + nrng.normal(0, args.noise, D["train"].shape).astype(np.float32)
                ae.fit(Xn, D["train"], batch_size=args.batch, epochs=1, verbose=0, shuffle=True)
                vl = ae.evaluate(D["val"], D["val"], batch_size=8192, verbose=0)
                if vl < best:
                    best, best_w, wait = vl, ae.get_weights(), 0
                else:
                    wait += 1
                    if args.patience > 0 and wait >= args.patience:
                        break
            ae.set_weights(best_w)
            epochs_run.append(ep)
            for k in recs:
                recs[k].append(ae.predict(D[k], batch_size=8192, verbose=0))
                codes[k].append(enc.predict(D[k], batch_size=8192, verbose=0))
            keras.backend.clear_session()
            continue
        cbs = []
        if args.patience > 0:
            cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience,
                                                     restore_best_weights=True))
        h = ae.fit(D["train"], D["train"], batch_size=args.batch, epochs=args.epochs,
                   validation_data=(D["val"], D["val"]), callbacks=cbs, verbose=0, shuffle=True)
        epochs_run.append(len(h.history["loss"]))
        for k in recs:
            recs[k].append(ae.predict(D[k], batch_size=8192, verbose=0))
            codes[k].append(enc.predict(D[k], batch_size=8192, verbose=0))
        keras.backend.clear_session()
    train_s = time.time() - t0
    ex = dict(ex, train_s=train_s, epochs_run=epochs_run)

    def score_set(R, Zc, prefix):
        """R: residuals dict, Zc: latent dict. All statistics from VAL normals."""
        out = {}
        out["mse"] = {k: (R[k] ** 2).mean(1) for k in R}
        v = (R["val"] ** 2).mean(0)
        out["pfnorm"] = {k: (R[k] ** 2 / v).sum(1) for k in R}
        mr = Maha().fit(R["val"])
        out["resmaha"] = {k: mr.score(R[k]) for k in R}
        if Zc is not None:
            ml = Maha().fit(Zc["val"])
            out["latmaha"] = {k: ml.score(Zc[k]) for k in R}
            J = {k: np.hstack([R[k], Zc[k]]) for k in R}
            mj = Maha().fit(J["val"])
            out["jointmaha"] = {k: mj.score(J[k]) for k in R}
        for nm in ("resmaha", "pfnorm", "mse"):
            out[f"{nm}+inmaha"] = {k: 0.5 * (zlog(out[nm][k], out[nm]["val"]) + zlog(im[k], im["val"]))
                                   for k in R}
        return {prefix + k: v for k, v in out.items()}

    # ensemble = average reconstruction (and first member alone for reference)
    R = {k: D[k] - np.mean(recs[k], 0) for k in recs}
    Zc = {k: codes[k][0] for k in codes} if args.ens == 1 else None
    S = score_set(R, Zc, "")
    if args.ens > 1:
        R1 = {k: D[k] - recs[k][0] for k in recs}
        S.update(score_set(R1, None, "m0_"))
        # score-averaging ensemble of resmaha (z of log score per member)
        per = []
        for m in range(args.ens):
            Rm = {k: D[k] - recs[k][m] for k in recs}
            mm = Maha().fit(Rm["val"])
            sm = {k: mm.score(Rm[k]) for k in Rm}
            per.append({k: zlog(sm[k], sm["val"]) for k in Rm})
        S["resmaha_scoreavg"] = {k: np.mean([p[k] for p in per], 0) for k in recs}
    for nm, s in S.items():
        rows.append(evaluate(nm, s["val"], s["sel"], s["test"], ysel, ytest, ex))
    append_results(out_path, rows)
    best = sorted(rows, key=lambda r: -r["pr"])[:4]
    print(f"seed {seed} train {train_s:.1f}s epochs {epochs_run} | " +
          " | ".join(f"{r['score']}: roc {r['roc']:.3f} pr {r['pr']:.3f} r@p {r['r_at_p93']:.2f} "
                     f"p@r {r['p_at_r433']:.3f} F1q99.9 {r['q99.9_f1']:.2f}" for r in best), flush=True)
