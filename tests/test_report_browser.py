"""The report opens in a real headless browser (Chromium), offline: every image loads and the
console stays clean. Slow: needs the `chromium` Debian package (`apt-get install chromium`)."""

import json
import re
import shutil
import subprocess

import pytest

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.evaluation.report import evaluation_report
from aedetect.training.config import TrainConfig
from aedetect.training.workflow import evaluate_detector, train_detector

pytestmark = pytest.mark.slow
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")

# Injected first in <head>: record console errors and failed loads (error events do not bubble,
# so listen in the capture phase). Injected last in <body>: after load, report every image.
WATCH = """<script>window.__errors=[];const e=console.error;console.error=(...a)=>{__errors.push(a.join(' '));
e(...a)};addEventListener('error',ev=>__errors.push('load error: '+(ev.target.src||ev.message||'?').slice(0,60)),
true);</script>"""
CHECK = """<script>addEventListener('load',()=>{const r={errors:__errors,images:[...document.images].map(
i=>({complete:i.complete,w:i.naturalWidth,h:i.naturalHeight}))};const p=document.createElement('pre');
p.id='aedetect-check';p.textContent=JSON.stringify(r);document.body.appendChild(p);});</script>"""


def _open(html_path, profile):
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=10000", "--dump-dom", html_path.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    df = generate_transactions(3000, 0.03, seed=0)
    result = train_detector(df, TrainConfig(epochs=2, protocol="time", threshold_rule="alert_budget"),
                            CREDITCARD)
    det, test = result.detector, df.iloc[result.split.test]
    m = evaluate_detector(det, df, result.split.test)
    x = test.drop(columns="Class")
    path = evaluation_report(det, test["Class"], det.anomaly_score(x), det.feature_errors(x), m,
                             "browser check").write(tmp_path / "rep", m)
    page = path.read_text()
    n_images = page.count("<img ")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + WATCH, 1).replace("</body>", CHECK + "</body>", 1))

    run = _open(probe, tmp_path / "profile")
    assert run.returncode == 0, run.stderr[-2000:]
    found = re.search(r'<pre id="aedetect-check">(.*?)</pre>', run.stdout, re.S)
    assert found, f"the check script did not run; stderr: {run.stderr[-2000:]}"
    state = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert state["errors"] == []
    assert len(state["images"]) == n_images == 7
    assert all(i["complete"] and i["w"] > 100 and i["h"] > 100 for i in state["images"]), state["images"]
    # Chromium logs every console message as INFO:CONSOLE; the report itself writes none.
    assert not [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    # The metrics table the browser rendered shows this run's figures.
    assert f"{m['pr_auc']:.4g}" in run.stdout and f"{m['roc_auc']:.4g}" in run.stdout
