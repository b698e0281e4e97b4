"""The dashboard's plot: alerts and verdicts per day, and the precision of the reviewed alerts
per day (fraud / (fraud + legit)), as one SVG image in a data URI (no file, no JavaScript)."""

from __future__ import annotations

import base64
import io


def daily_plot(daily: list[dict]) -> str:
    """A data: URI of an SVG with two panels over `AlertStore.daily`'s rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import pandas as pd

    days = pd.to_datetime([d["day"] for d in daily])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    width = 0.4
    offset = pd.Timedelta(hours=5)
    top.bar(days - offset, [d["alerts"] for d in daily], width=width, label="alerts", color="#4c72b0")
    top.bar(days + offset, [d["verdicts"] for d in daily], width=width, label="verdicts", color="#dd8452")
    top.set_ylabel("per day")
    top.legend(frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2)
    precision = [float("nan") if d["precision"] is None else d["precision"] for d in daily]
    bottom.plot(days, precision, marker="o", color="#c44e52")
    bottom.set_ylim(0, 1.05)
    bottom.set_ylabel("precision of\nreviewed alerts")
    # one day either side, a tick per day (at most ~12 of them): a single day is one bar pair
    bottom.set_xlim(days.min() - pd.Timedelta(days=1), days.max() + pd.Timedelta(days=1))
    span = (days.max() - days.min()).days + 2
    bottom.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, span // 12)))
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    for ax in (top, bottom):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()
