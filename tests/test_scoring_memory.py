"""Streaming scoring keeps memory bounded by the chunk, not the file."""

from __future__ import annotations

import json
import subprocess
import sys

from aedetect.data.generate import generate_transactions
from aedetect.data.io import write_table

# Stated bound (docs/serving.md): with 20,000-row chunks, peak RSS grows by under 300 MB above
# the process with the model loaded, whatever the file size. Reading this 200,000-row file whole
# and scoring it grows RSS by about 480 MB, so the bound separates the two.
BOUND_MB = 300

CHILD = r"""
import json, sys, threading, time, psutil
from aedetect.model.detector import load_detector
from aedetect.serving.batch import score_file
det = load_detector(sys.argv[1])
det.anomaly_score([[0.0] * det.n_features_in_])
proc = psutil.Process()
base = peak = proc.memory_info().rss
done = False
def sample():
    global peak
    while not done:
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.005)
t = threading.Thread(target=sample, daemon=True); t.start()
s = score_file(det, sys.argv[2], sys.argv[3], chunk_rows=20_000)
done = True; t.join()
print(json.dumps({"rows": s.rows_read, "growth_mb": (peak - base) / 2**20}))
"""


def test_peak_memory_stays_under_bound(model_dir, tmp_path):
    data = write_table(generate_transactions(200_000, 0.01, seed=4), tmp_path / "big.csv")
    assert data.stat().st_size > 100 * 2**20  # the file is far larger than the bound's headroom
    res = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), str(data),
                          str(tmp_path / "out.parquet")], capture_output=True, text=True, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["rows"] == 200_000
    assert got["growth_mb"] < BOUND_MB, got
