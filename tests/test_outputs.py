"""Outputs never destroy inputs: one rule for every command that writes (aedetect.files).

An output onto, inside or around an input or a model folder is refused before any work; a
folder is replaced (--overwrite) only when aedetect wrote everything in it; no hidden copy is
left behind; a write the system refuses is one line naming the path, even with -q.
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
from test_cli_hostile import cli  # noqa: F401 (the in-process CLI fixture)

from aedetect.data.io import write_table
from aedetect.errors import AedetectError


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def csv(frame, tmp_path):
    return write_table(frame.head(300), tmp_path / "d.csv")


@pytest.fixture
def model(model_dir, tmp_path):
    return shutil.copytree(model_dir, tmp_path / "model")


@pytest.mark.parametrize("command", ["monitor", "evaluate"])
def test_out_onto_the_data_is_refused(cli, model, csv, command):  # noqa: F811
    before = csv.read_bytes()
    extra = ["--reference", csv] if command == "monitor" else ["--rows", "all"]
    code, err = cli(command, "--model", model, "--data", csv, "--out", csv, *extra)
    assert code == 1 and f"--out {csv} is the input file {csv}" in err
    assert csv.read_bytes() == before


def test_schema_infer_never_writes_into_a_model_folder(cli, model, csv):  # noqa: F811
    from aedetect.store.folder import open_folder

    manifest = (model / "manifest.json").read_bytes()
    for out in (model / "manifest.json", model / "schema.yaml"):
        code, err = cli("schema", "infer", "--data", csv, "--out", out)
        assert code == 1 and f"--out {out} lies inside {model}, a folder aedetect wrote" in err
    assert (model / "manifest.json").read_bytes() == manifest and not (model / "schema.yaml").exists()
    open_folder(model)  # still a valid model folder


def test_train_overwrite_never_deletes_files_it_did_not_write(cli, model, frame, tmp_path):  # noqa: F811
    proj = tmp_path / "proj"
    proj.mkdir()
    data = write_table(frame.head(300), proj / "g.csv")
    (proj / "notes.txt").write_text("mine")
    code, err = cli("train", "--data", data, "--out", proj, "--overwrite")
    assert code == 1 and f"--out {proj} holds the input file {data}" in err
    other = tmp_path / "other"
    shutil.copytree(proj, other)
    code, err = cli("train", "--data", data, "--out", other, "--overwrite")
    assert code == 1 and f"--out {other} is not a folder aedetect wrote; it holds g.csv, notes.txt" in err
    (model / "notes.txt").write_text("mine")  # a model folder, with a file of the user's in it
    code, err = cli("train", "--data", data, "--out", model, "--overwrite")
    assert code == 1 and "holds files aedetect did not write there: notes.txt" in err
    assert sorted(p.name for p in proj.iterdir()) == ["g.csv", "notes.txt"]
    assert (model / "notes.txt").read_text() == "mine" and (model / "manifest.json").is_file()


def test_export_never_replaces_the_model_folder(cli, model, tmp_path):  # noqa: F811
    from aedetect.store.folder import open_folder

    for out in (model, model / "export", tmp_path):
        code, err = cli("export", "--model", model, "--out", out, "--overwrite")
        assert code == 1 and f"--out {out}" in err and "model folder" in err, err
    open_folder(model)
    assert not (model / "export").exists()


def test_a_folder_output_onto_a_file_keeps_the_file_and_hides_nothing(cli, model, csv, tmp_path):  # noqa: F811
    gg = write_table(__import__("pandas").DataFrame({"a": [1, 2]}), tmp_path / "gg.csv")
    before = gg.read_bytes()
    for args in (["train", "--data", csv, "--epochs", "1"], ["export", "--model", model]):
        code, err = cli(*args, "--out", gg, "--overwrite")
        assert code == 1 and f"--out {gg} is a file, not a folder aedetect wrote" in err
    assert gg.read_bytes() == before and _hidden(tmp_path) == []


def test_replacing_a_folder_leaves_no_hidden_copy_after_success_or_failure(tmp_path, monkeypatch):
    from aedetect import files

    target = tmp_path / "rep"
    for text in ("1", "2"):
        with files.atomic_folder(target, overwrite=True) as tmp:
            (tmp / "a.txt").write_text(text)
    assert (target / "a.txt").read_text() == "2" and _hidden(tmp_path) == []
    real = os.replace

    def rename_in_fails(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", rename_in_fails)
    with pytest.raises(AedetectError, match=f"cannot write {target}: Invalid cross-device link"):
        with files.atomic_folder(target, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("3")
    assert (target / "a.txt").read_text() == "2" and _hidden(tmp_path) == []  # the old one, back
    assert json.loads((target / "_aedetect-files.json").read_text())["files"] == ["a.txt"]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_quiet_keeps_write_errors_and_names_the_path(cli, model, csv, tmp_path, monkeypatch):  # noqa: F811
    import pyarrow.csv as pacsv

    class FullDisk:
        def __init__(self, *args):
            pass

        write_table = _disk_full

        def close(self):
            pass

    monkeypatch.setattr(pacsv, "CSVWriter", FullDisk)
    out = tmp_path / "o.csv"
    code, err = cli("-q", "score", "--model", model, "--data", csv, "--out", out)
    assert code == 1 and f"error: cannot write {out}: No space left on device" in err
    monkeypatch.setattr("pathlib.Path.write_text", _disk_full)
    code, err = cli("-q", "schema", "infer", "--data", csv, "--out", tmp_path / "s.yaml")
    assert code == 1 and f"error: cannot write {tmp_path / 's.yaml'}: No space left on device" in err
    assert not out.exists() and _hidden(tmp_path) == []


def test_ordinary_overwrites_still_work(cli, model, csv, tmp_path):  # noqa: F811
    out = tmp_path / "scored.csv"
    for flags in ([], ["--overwrite"]):  # an existing scores file is replaced with --overwrite
        code, err = cli("score", "--model", model, "--data", csv, "--out", out, *flags)
        assert code == 0, err
    code, err = cli("score", "--model", model, "--data", csv, "--out", out)
    assert code == 1 and f"{out} already exists; pass --overwrite to replace it" in err
    new = tmp_path / "new"
    for flags in ([], ["--overwrite"]):  # retraining into the folder aedetect wrote
        code, err = cli("train", "--data", csv, "--out", new, "--epochs", "1", "--hidden-units",
                        "4,2,4", *flags)
        assert code == 0, err
    code, err = cli("train", "--data", csv, "--out", new, "--epochs", "1")
    assert code == 1 and "already exists; pass --overwrite" in err
    for flags in ([], ["--overwrite"]):  # a report folder aedetect wrote is replaced by the new report
        code, err = cli("evaluate", "--model", model, "--data", csv, "--rows", "all",
                        "--report", tmp_path / "rep", *flags)
        assert code == 0, err
    assert (tmp_path / "rep" / "report.html").is_file() and _hidden(tmp_path) == []
