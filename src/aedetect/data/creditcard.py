"""The demo's data set, the ULB credit-card file: its column names and its schema.

The one place that knows them. Every other module takes the columns from a schema: the one a
model folder stores, one given as an argument, or this one where the data is the credit-card
file (`aedetect demo`, `--data creditcard`, the generated credit-card rows, shard folders).

The file (Kaggle's "Credit Card Fraud Detection"; `aedetect.data.fetch` downloads it) holds
two days of card transactions: `Time` in seconds since the first one, `V1`..`V28` (principal
components of undisclosed features), `Amount`, and `Class` (1 = fraud).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aedetect.data.schema import DAY, DatasetSchema

TIME = "Time"
AMOUNT = "Amount"
LABEL = "Class"
PCA_COLUMNS = tuple(f"V{i}" for i in range(1, 29))
FEATURES = (TIME, *PCA_COLUMNS, AMOUNT)
TIME_SPAN = 172_792.0  # seconds from the first to the last transaction of the real file

# The transforms, as `AutoencoderDetector(log_columns=..., periodic_columns=...)` takes them:
# amounts are heavy-tailed (log1p), and the time of day matters, not the day (sin/cos of the
# hour). docs/experiments.md measures both.
LOG_COLUMNS = (AMOUNT,)
PERIODIC_COLUMNS = ((TIME, DAY),)

CREDITCARD = DatasetSchema.of_numbers(FEATURES, LOG_COLUMNS, PERIODIC_COLUMNS, label=LABEL, time=TIME)


def numbers_model_schema(features: Sequence[str], log_columns: Iterable[str] = (),
                         periodic_columns: Iterable[tuple[str, float]] = ()) -> DatasetSchema:
    """The schema of a numbers-only model (fitted with `log_columns`/`periodic_columns`, as
    every model was before model folders stored a schema): its columns, read as it reads them.

    Such a model of exactly the credit-card columns and transforms is a credit-card model, whose
    label and time column the command line has always taken to be `Class` and `Time`: it gets
    `CREDITCARD`, so `aedetect evaluate` and `monitor` keep working on those folders. Any other
    has no label or time column; the caller names them."""
    periodic = {c: float(p) for c, p in periodic_columns}
    if list(features) == CREDITCARD.features and set(log_columns) == set(LOG_COLUMNS) \
            and periodic == dict(PERIODIC_COLUMNS):
        return CREDITCARD
    return DatasetSchema.of_numbers(features, log_columns, periodic.items())
