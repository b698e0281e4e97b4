"""Evidence: metrics on labelled rows, the baselines, the HTML report and its plots."""

from aedetect._imports import lazy_exports

__all__ = ["Report", "average_precision_scorer", "evaluate_detector", "evaluate_model",
           "evaluation_report"]
__getattr__ = lazy_exports(__name__, {
    "average_precision_scorer": "metrics", "evaluate_detector": "metrics", "evaluate_model": "metrics",
    "Report": "report", "evaluation_report": "report"})
