"""Property-based tests of the readers and the batch scorer (hypothesis).

Any table of floats, text, empties, extremes, duplicate names and odd bytes either scores every
good row exactly as the in-memory path does, or ends with one line naming the file (and, for a
cell, the column, row and value). Never a traceback, never a NaN score, never a half-written
output. Example counts are small so the default run stays quick; raise them with
`--hypothesis-profile thorough`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.io import read_table
from aedetect.errors import DataError
from aedetect.serving.batch import bad_rows_path, score_file

FEATURES = list(CREDITCARD.features)
settings.register_profile("default-fast", max_examples=15, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])

HOSTILE = ["", "NaN", "nan", "NA", "abc", "inf", "-inf", "1e200", "-1e16", "[/x]", "[bold]",
           "\x1b[31m", "0x10", "1,5", " 1", "１", "--1", "1e", "null", "None", "True"]
TOKEN = st.one_of(
    st.sampled_from(HOSTILE),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),  # any finite float
    st.integers(-10**20, 10**20).map(str),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='"\r\n,'),
            max_size=6),
)


@st.composite
def tables(draw):
    n = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    base = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    base["Time"] = rng.uniform(0, 172_800, n)
    base["Amount"] = rng.exponential(80, n)
    cells = [[repr(float(v)) for v in row] for row in base.to_numpy()]
    for _ in range(draw(st.integers(0, 4))):
        r, c = draw(st.integers(0, n - 1)), draw(st.integers(0, len(FEATURES) - 1))
        cells[r][c] = draw(TOKEN)
    header = list(FEATURES)
    if draw(st.booleans()) and draw(st.integers(0, 5)) == 0:
        header[2] = header[1]  # a duplicate column name
    text = ",".join(header) + "\n" + "".join(
        ",".join(f'"{v}"' if v and not _plain(v) else v for v in row) + "\n" for row in cells)
    data = text.encode("utf-8")
    if draw(st.integers(0, 9)) == 0:
        data = "\ufeff".encode() + data  # a byte-order mark
    if draw(st.integers(0, 9)) == 0:
        data = data.replace(b"\n", b"\n\xe9\xff", 1)  # bytes that are not UTF-8
    return data, header, cells


def _plain(v: str) -> bool:
    return all(ch.isalnum() or ch in ".-+" for ch in v)


def _good_value(token: str, lo: float, hi: float) -> float | None:
    core = token.strip(" \t")  # spaces and tabs around a number are ignored on every path
    try:
        v = float(core)
    except ValueError:
        return None
    # Python's float() also reads "1_0" and other scripts' digits ("１"); a CSV number is ASCII
    if "_" in core or not core.isascii() or core != core.strip() or not math.isfinite(v) or not lo <= v <= hi:
        return None
    return v


def _check_error(exc: DataError, path) -> None:
    msg = str(exc)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    assert "\x1b" not in msg and "Traceback" not in msg


def _no_leftovers(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") or p.name.startswith("o.")]


@settings(settings.get_profile("default-fast"))
@given(table=tables(), skip=st.booleans())
def test_batch_scorer_scores_good_rows_exactly_or_fails_in_one_line(detector, tmp_path_factory, table, skip):
    data, header, cells = table
    folder = tmp_path_factory.mktemp("prop")
    src = folder / "in.csv"
    src.write_bytes(data)
    out = folder / "o.csv"
    try:
        s = score_file(detector, src, out, on_bad_rows="skip" if skip else "error", top_k=1)
    except DataError as exc:
        _check_error(exc, src)
        assert not out.exists() and not bad_rows_path(out).exists()
        assert [p.name for p in folder.iterdir()] == ["in.csv"]  # nothing half-written
        return
    lo, hi = detector.preprocessor_.limits()
    values = [[_good_value(t, lo[j], hi[j]) for j, t in enumerate(row)] for row in cells]
    good = [i for i, row in enumerate(values) if all(v is not None for v in row)]
    scored = pd.read_csv(s.output)
    assert {"row", "score", "flag"} <= set(scored.columns)  # the full header, even with no row scored
    assert np.isfinite(scored["score"].astype("float64")).all()
    assert list(scored["row"]) == [i + 1 for i in good]
    assert s.rows_read == len(cells) and s.rows_scored + s.rows_skipped == len(cells)
    if good:
        x = pd.DataFrame([values[i] for i in good], columns=detector.feature_names_in_)  # named, as fitted
        np.testing.assert_allclose(scored["score"], detector.anomaly_score(x), rtol=1e-5)
        assert (scored["flag"] == (scored["score"] > detector.threshold_)).all()
    if skip and s.rows_skipped:
        side = pd.read_csv(bad_rows_path(out), keep_default_na=False)
        assert sorted(side["row"]) == [i + 1 for i in range(len(cells)) if i not in good]
        assert (side["reason"].str.len() > 0).all()


@settings(settings.get_profile("default-fast"))
@given(table=tables())
def test_reader_returns_checked_floats_or_fails_in_one_line(tmp_path_factory, table):
    data, header, cells = table
    src = tmp_path_factory.mktemp("read") / "in.csv"
    src.write_bytes(data)
    try:
        df = read_table(src, require_label=False)
    except DataError as exc:
        _check_error(exc, src)
        return
    got = df[FEATURES].to_numpy()
    assert np.isfinite(got).all() and (np.abs(got) <= 1e15).all()
    expected = np.array([[float(t) for t in row] for row in cells])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("value", ["1e200", "-1e200", "1e16"])
def test_extremes_never_score_nan(detector, frame, tmp_path, value):
    df = frame.head(5)[FEATURES].astype(object)
    df.loc[1, "V3"] = value
    src = tmp_path / "x.csv"
    df.to_csv(src, index=False)
    s = score_file(detector, src, tmp_path / "o.csv", on_bad_rows="skip")
    assert np.isfinite(pd.read_csv(s.output)["score"]).all() and s.rows_skipped == 1


# Text a CSV cell may hold where a number is expected: numbers in every notation, and near-misses
# (spaces, signs, underscores, words, NaN and infinities, bare signs and exponents).
_NUMBER_ALPHABET = "0123456789+-.eE _naifINFxX,"


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.text(_NUMBER_ALPHABET, max_size=12),
                          st.floats(allow_nan=True, allow_infinity=True).map(repr),
                          st.none()), min_size=1, max_size=20))
def test_vectorised_number_reading_equals_the_per_value_rules(cells):
    """The batch path reads a clean column in one Arrow cast; whenever it takes a column, every
    value and problem equals the per-value rules' (`read_numbers` on Python objects)."""
    import pyarrow as pa

    from aedetect.data.values import _read_numbers_by_value, clean_numbers

    fast = clean_numbers(pa.array(cells, pa.string()))
    slow, problems = _read_numbers_by_value(pd.Series(cells, dtype=object))
    if fast is not None:
        assert all(p is None for p in problems)
        np.testing.assert_array_equal(fast, slow)  # NaN where missing, bit for bit elsewhere
    elif all(p is None for p in problems):  # refused by Arrow, good by the rules: spaces and such
        assert any(c is not None and c != c.strip() for c in cells) or any(c == "" for c in cells)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_infinity=False),
                          st.text(max_size=8), st.sampled_from(["7.0", "-3.00", "", " ", "007"])),
                min_size=1, max_size=5))
def test_a_category_reads_the_same_alone_as_among_many(cells):
    """A request's few values are read one at a time; a file's many at once: the same text."""
    from aedetect.data.values import SMALL, category_text

    alone = category_text(pd.Series(cells, dtype=object)).tolist()
    among = category_text(pd.Series(cells * (SMALL // len(cells) + 2), dtype=object)).tolist()[:len(cells)]
    assert alone == among
