"""Data: the dataset schema, the credit-card data set, readers, the real-data fetcher, generated
data, splits, TFRecord."""

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.io import read_table, write_table
from aedetect.data.schema import DatasetSchema, Schema
from aedetect.data.splits import Split, guide_split, make_split, time_split

__all__ = [
    "CREDITCARD",
    "DatasetSchema",
    "Schema",
    "Split",
    "guide_split",
    "make_split",
    "read_table",
    "time_split",
    "write_table",
]
