"""Data: the credit-card schema, readers, the real-data fetcher, generated data, splits, TFRecord."""

from aedetect.data.io import read_table, write_table
from aedetect.data.schema import CREDITCARD, Schema
from aedetect.data.splits import Split, guide_split, make_split, time_split

__all__ = [
    "CREDITCARD",
    "Schema",
    "Split",
    "guide_split",
    "make_split",
    "read_table",
    "time_split",
    "write_table",
]
