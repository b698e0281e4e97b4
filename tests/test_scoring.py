"""Streaming batch scoring: equality with in-memory scoring, bad-row policies, atomic output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.data.io import write_table
from aedetect.errors import DataError
from aedetect.serving.batch import bad_rows_path, score_file

FEATURES = list(CREDITCARD.features)


@pytest.fixture(scope="module")
def frame():
    df = generate_transactions(3000, 0.02, seed=7)
    df.insert(0, "tx_id", [f"t{i}" for i in range(len(df))])
    return df


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("fmt_in,fmt_out", [("csv", "parquet"), ("parquet", "csv")])
def test_streaming_equals_in_memory(detector, frame, tmp_path, fmt_in, fmt_out):
    src = write_table(frame, tmp_path / f"in.{fmt_in}")
    seen = []
    s = score_file(detector, src, tmp_path / f"out.{fmt_out}", id_columns=["tx_id"], chunk_rows=700,
                   progress=lambda rows, frac: seen.append(rows))
    assert len(seen) >= 4 and seen[-1] == len(frame)  # several chunks, each reported
    out = pd.read_csv(s.output) if fmt_out == "csv" else pd.read_parquet(s.output)
    expected = detector.anomaly_score(frame[FEATURES])
    assert list(out.columns[:4]) == ["row", "tx_id", "score", "flag"]
    assert (out["tx_id"].to_numpy() == frame["tx_id"].to_numpy()).all()
    np.testing.assert_allclose(out["score"].to_numpy(), expected, rtol=1e-6)
    assert (out["flag"].to_numpy() == (expected > detector.threshold_)).all()
    assert s.rows_flagged == int((expected > detector.threshold_).sum())
    # Explanations name input columns: the contributions of `Time:sin` and `Time:cos` add up.
    names, per_column = detector.preprocessor_.column_contributions(
        detector.feature_contributions(frame[FEATURES]))
    worst = np.asarray(names)[per_column.argmax(axis=1)]
    assert (out["top1_feature"].to_numpy() == worst).all()
    assert all(r.startswith(f"{f}=") for r, f in zip(out["top1_reason"], out["top1_feature"], strict=True))
    assert _leftovers(tmp_path) == []


def test_all_columns_option(detector, frame, tmp_path):
    src = write_table(frame.head(50), tmp_path / "in.csv")
    out = pd.read_csv(score_file(detector, src, tmp_path / "o.csv", all_columns=True, top_k=0).output)
    assert list(out.columns) == ["row", *frame.columns, "score", "flag"]
    np.testing.assert_allclose(out["V1"], frame["V1"].head(50))


def _with_bad_rows(frame, tmp_path):
    text = frame.head(400).to_csv(index=False).splitlines()
    header = text[0].split(",")
    row = text[10].split(",")                         # data row 10: a word in V3
    row[header.index("V3")] = "abc"
    text[10] = ",".join(row)
    row = text[250].split(",")                        # data row 250: empty Amount
    row[header.index("Amount")] = ""
    text[250] = ",".join(row)
    text[300] = ",".join(text[300].split(",")[:-2])   # data row 300: too few fields
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(text) + "\n")
    return path


def test_bad_rows_error_names_file_row_and_reason(detector, frame, tmp_path):
    src = _with_bad_rows(frame, tmp_path)
    with pytest.raises(DataError, match=r"bad\.csv: row 10: column 'V3': value 'abc' is not a number"):
        score_file(detector, src, tmp_path / "out.csv", chunk_rows=100)
    assert not (tmp_path / "out.csv").exists() and _leftovers(tmp_path) == []


def test_bad_rows_skip_writes_side_file(detector, frame, tmp_path):
    src = _with_bad_rows(frame, tmp_path)
    s = score_file(detector, src, tmp_path / "out.csv", chunk_rows=100, on_bad_rows="skip",
                   id_columns=["tx_id"])
    assert (s.rows_read, s.rows_scored, s.rows_skipped) == (400, 397, 3)
    side = pd.read_csv(bad_rows_path(tmp_path / "out.csv"))
    assert sorted(side["row"]) == [10, 250, 300]
    reasons = dict(zip(side["row"], side["reason"], strict=True))
    assert "'V3': value 'abc'" in reasons[10] and "'Amount': empty" in reasons[250]
    assert "expected 32 fields, found 30" in reasons[300]
    out = pd.read_csv(s.output)
    assert set(out["row"]) == set(range(1, 401)) - {10, 250, 300}  # every row accounted for
    kept = frame.head(400).drop(index=[9, 249, 299])
    assert (out["tx_id"].to_numpy() == kept["tx_id"].to_numpy()).all()
    # float32 network: a different batch composition moves the last digits (seen at 1.04e-6)
    np.testing.assert_allclose(out["score"], detector.anomaly_score(kept[FEATURES]), rtol=1e-5)


@pytest.mark.parametrize("case", ["plain", "line break in a quoted value", "a row with too few fields"])
def test_a_large_chunk_keeps_quoted_line_breaks_and_names_a_short_row(detector, frame, tmp_path, case):
    """One chunk over 2 MiB: a quoted value holding a line break keeps it, a row with the wrong
    number of fields is named and skipped; every other row comes back with its id as written
    and its score."""
    big = pd.concat([frame] * 2, ignore_index=True)
    big["tx_id"] = [f"t{i}" for i in range(len(big))]
    if case == "line break in a quoted value":
        big.loc[4321, "tx_id"] = "two\nlines"
    big.to_csv(tmp_path / "in.csv", index=False)
    if case == "a row with too few fields":
        lines = (tmp_path / "in.csv").read_text().splitlines()
        lines[5001] = ",".join(lines[5001].split(",")[:-3])  # data row 5001
        (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    assert (tmp_path / "in.csv").stat().st_size > 2 << 20
    s = score_file(detector, tmp_path / "in.csv", tmp_path / "out.parquet", id_columns=["tx_id"],
                   chunk_rows=len(big), on_bad_rows="skip")
    out = pd.read_parquet(s.output)
    kept = big.drop(index=[5000]) if case == "a row with too few fields" else big
    assert (out["tx_id"].to_numpy() == kept["tx_id"].to_numpy()).all()
    np.testing.assert_allclose(out["score"].to_numpy(), detector.anomaly_score(kept[FEATURES]), rtol=1e-5)
    if case == "a row with too few fields":
        side = pd.read_csv(bad_rows_path(s.output))
        assert side["row"].tolist() == [5001] and "expected 32 fields, found 29" in side["reason"][0]
    else:
        assert s.rows_skipped == 0


def test_missing_column_is_reported(detector, frame, tmp_path):
    src = write_table(frame.drop(columns=["V7"]).head(20), tmp_path / "in.csv")
    with pytest.raises(DataError, match=r"missing column\(s\) \['V7'\]"):
        score_file(detector, src, tmp_path / "o.csv")


def test_interrupt_in_process_leaves_nothing(detector, frame, tmp_path):
    src = write_table(frame, tmp_path / "in.csv")
    (tmp_path / "o.parquet").write_bytes(b"previous")

    def stop(rows, frac):
        if rows > 1000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_file(detector, src, tmp_path / "o.parquet", chunk_rows=500, on_bad_rows="skip",
                   progress=stop)
    assert (tmp_path / "o.parquet").read_bytes() == b"previous"  # the old output is untouched
    assert not bad_rows_path(tmp_path / "o.parquet").exists() and _leftovers(tmp_path) == []


def test_sigterm_to_cli_leaves_no_output(model_dir, tmp_path):
    src = write_table(generate_transactions(150_000, 0.01, seed=3), tmp_path / "big.csv")
    out = tmp_path / "out" / "scored.csv"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "aedetect.cli", "score", "--model", str(model_dir),
                             "--data", str(src), "--out", str(out), "--chunk-rows", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(out.parent.iterdir()) and time.monotonic() < deadline:  # wait for the temp file
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "no output was written" in err
    assert os.listdir(out.parent) == []


def test_prefetch_keeps_order_and_raises_producer_errors():
    from aedetect.serving.batch import prefetch

    assert list(prefetch(iter(range(100)), depth=1)) == list(range(100))

    def failing():
        yield 1
        raise DataError("bad chunk")

    got = []
    with pytest.raises(DataError, match="bad chunk"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1]


def test_top_features_match_a_full_sort(rng):
    from aedetect.serving.runtime import top_features

    values = rng.normal(size=(200, 31))
    names = [f"f{i}" for i in range(31)]
    top_n, top_v = top_features(values, names, 3)
    order = np.argsort(-values, axis=1)[:, :3]
    np.testing.assert_array_equal(top_v, np.take_along_axis(values, order, axis=1))
    assert (top_n == np.asarray(names, dtype=object)[order]).all()


def test_an_output_with_no_scored_row_has_the_columns_of_one_that_has(detector, frame, tmp_path):
    """Every row bad: the file still has the header a scored file has, reasons included."""
    bad = frame.head(5).copy()
    bad["V3"] = "abc"
    src = write_table(bad, tmp_path / "in.csv")
    s = score_file(detector, src, tmp_path / "none.csv", on_bad_rows="skip", id_columns=["tx_id"])
    assert s.rows_scored == 0
    good = score_file(detector, write_table(frame.head(5), tmp_path / "ok.csv"), tmp_path / "ok-out.csv",
                      id_columns=["tx_id"])
    assert list(pd.read_csv(s.output).columns) == list(pd.read_csv(good.output).columns)


@pytest.mark.parametrize("text", ["NaN", "nan", "inf", "-Infinity"])
def test_number_text_the_reader_would_take_is_refused_as_written(detector, frame, tmp_path, text):
    """The CSV reader types number columns and reads "NaN" or "inf" as numbers; the one reading
    of values refuses them (a gap is an empty cell), naming the text as written, whatever the
    chunk. Read as a number, "NaN" would have become a gap the model imputes or calls empty."""
    src = tmp_path / "in.csv"
    lines = frame.head(300).to_csv(index=False).splitlines()
    header = lines[0].split(",")
    row = lines[120].split(",")
    row[header.index("V5")] = text
    lines[120] = ",".join(row)
    src.write_text("\n".join(lines) + "\n")
    why = "not finite" if "nf" in text.lower() else "not a number"
    with pytest.raises(DataError, match=rf"row 120: column 'V5': value '{text}' is {why}"):
        score_file(detector, src, tmp_path / "out.csv", chunk_rows=100)


@pytest.mark.parametrize("case", ["plain", "quoted line breaks at every cut", "no final line end", "CRLF",
                                  "lines longer than a block"])
def test_chunked_csv_reading_gives_the_rows_of_one_read(tmp_path, case):
    """The batch reader cuts a CSV into blocks of whole lines in one reused buffer: whatever the
    cuts meet (a quoted value with line breaks, a last line without its end, CRLF, lines longer
    than a block), the chunks hold the rows of one whole-file read, in order, each once."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from aedetect.serving.batch import _Source

    rng = np.random.default_rng(7)
    n = 3000
    notes = np.array([f"n{i}" for i in range(n)], dtype=object)
    if case == "quoted line breaks at every cut":
        notes[::7] = "two\nlines, and a comma"
    if case == "lines longer than a block":
        notes[::50] = "x" * 300_000
    frame = pd.DataFrame({"a": rng.normal(size=n), "note": notes, "b": rng.integers(0, 9, n)})
    text = frame.to_csv(index=False, lineterminator="\r\n" if case == "CRLF" else "\n")
    if case == "no final line end":
        text = text.rstrip("\n")
    path = tmp_path / "in.csv"
    path.write_bytes(text.encode())
    source = _Source(path, ["a", "b"], chunk_rows=97, numbers=frozenset({"a", "b"}))
    try:
        chunks = [table for table, bad in source]
    finally:
        source.close()
    assert len(chunks) > 5
    got = pa.concat_tables([t.cast(chunks[0].schema) for t in chunks])
    whole = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"note": pa.string()}))
    assert got.num_rows == n
    assert got.column("note").to_pylist() == whole.column("note").to_pylist()
    np.testing.assert_array_equal(got.column("a").to_numpy(), whole.column("a").to_numpy())
    np.testing.assert_array_equal(got.column("b").to_numpy(), whole.column("b").to_numpy())
