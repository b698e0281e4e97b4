import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.io import read_table, write_table
from aedetect.data.schema import validate_frame
from aedetect.errors import DataError


@pytest.fixture
def small(frame):
    return frame.head(50).copy()


def test_valid_frame_passes_and_is_float(small):
    out = validate_frame(small, CREDITCARD)
    assert list(out.columns) == list(small.columns)
    assert out["V1"].dtype == np.float64
    assert set(out["Class"].unique()) <= {0, 1}


def test_missing_column_is_named(small):
    with pytest.raises(DataError, match=r"missing column\(s\) 'Amount'"):
        validate_frame(small.drop(columns="Amount"), CREDITCARD, source="x.csv")


def test_extra_column_is_named(small):
    small["note"] = "a"
    with pytest.raises(DataError, match=r"unexpected column\(s\) 'note'"):
        validate_frame(small, CREDITCARD)
    # ... unless extra columns are allowed (scoring keeps id columns)
    assert "note" in validate_frame(small, CREDITCARD, allow_extra=True).columns


def test_non_numeric_value_names_column_row_and_value(small):
    small["V3"] = small["V3"].astype(object)
    small.loc[16, "V3"] = "abc"
    with pytest.raises(DataError, match=r"x\.csv: column 'V3', row 17: value 'abc' is not a number"):
        validate_frame(small, CREDITCARD, source="x.csv")


def test_empty_value_is_reported(small):
    small.loc[4, "V9"] = np.nan
    with pytest.raises(DataError, match=r"column 'V9', row 5: empty value"):
        validate_frame(small, CREDITCARD)


@pytest.mark.parametrize("bad", [2, -1, 0.5, "yes"])
def test_label_must_be_0_or_1(small, bad):
    small["Class"] = small["Class"].astype(object)
    small.loc[3, "Class"] = bad
    with pytest.raises(DataError, match=r"column 'Class', row 4: label must be 0 \(normal\) or 1"):
        validate_frame(small, CREDITCARD)


def test_infinite_value_is_rejected(small):
    small.loc[0, "Amount"] = np.inf
    with pytest.raises(DataError, match=r"column 'Amount', row 1: value .* is not finite"):
        validate_frame(small, CREDITCARD)


def test_csv_and_parquet_round_trip(tmp_path, small):
    for name in ("a.csv", "a.parquet"):
        write_table(small, tmp_path / name)
        back = read_table(tmp_path / name)
        np.testing.assert_allclose(back[list(CREDITCARD.features)], small[list(CREDITCARD.features)])
    assert not list(tmp_path.glob("*.part"))  # nothing half-written left behind


def test_csv_with_bad_value_names_row(tmp_path, small):
    path = tmp_path / "bad.csv"
    write_table(small, path)
    lines = path.read_text().splitlines()
    cells = lines[10].split(",")
    cells[5] = "oops"
    lines[10] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bad\.csv: column 'V5', row 10: value 'oops'"):
        read_table(path)


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_table(empty)
    header = tmp_path / "header.csv"
    header.write_text(",".join([*CREDITCARD.features, "Class"]) + "\n")
    with pytest.raises(DataError, match="no data rows"):
        read_table(header)


def test_ragged_csv_and_unknown_suffix(tmp_path, small):
    path = tmp_path / "ragged.csv"
    write_table(small, path)
    path.write_text(path.read_text() + "1,2,3\n")
    with pytest.raises(DataError, match=r"ragged\.csv: row \d+: expected 31 fields, found 3"):
        read_table(path)
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'"):
        read_table(tmp_path / "data.xlsx")
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv")


def test_write_failure_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.parquet"
    bad = pd.DataFrame({"a": [object()]})  # not serialisable by arrow
    with pytest.raises(pa.ArrowException):
        write_table(bad, target)
    assert not target.exists()
    assert not list(tmp_path.iterdir())
