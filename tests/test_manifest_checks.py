"""A model folder whose manifest does not add up is refused with the reason, before it scores."""

from __future__ import annotations

import json
import shutil

import pytest

from aedetect.errors import ArtifactError
from aedetect.store.folder import MANIFEST_FILE, read_manifest
from aedetect.store.manifest import check_manifest_semantics


@pytest.fixture
def folder(model_dir, tmp_path):
    return shutil.copytree(model_dir, tmp_path / "m")


def _edit(folder, change):
    m = json.loads((folder / MANIFEST_FILE).read_text())
    change(m)
    (folder / MANIFEST_FILE).write_text(json.dumps(m))


def _reverse_schema(m):
    m["input_schema"]["feature_names"].reverse()


def _set(section, key, value):
    return lambda m: m[section].update({key: value})


@pytest.mark.parametrize("change, message", [
    (_set("threshold", "value", float("nan")), r"threshold\.value'?: .*finite number"),
    (_set("threshold", "value", "abc"), r"threshold\.value'?: Input should be a valid"),
    (_set("threshold", "value", -1e9), r"below 0, the lowest possible score: every row"),
    (_set("threshold", "value", True), r"threshold\.value'?: Input should be a valid"),
    (_reverse_schema, r"input_schema\.feature_names .* differ from the columns the preprocessing"),
    (lambda m: m["input_schema"]["feature_names"].__setitem__(1, "Time"), r"repeats column\(s\) \['Time'\]"),
    (lambda m: m["preprocessing"]["mean"].pop(), r"preprocessing\.mean holds 30 values for 31"),
    (_set("preprocessing", "scale", [0.0] * 31), r"preprocessing\.scale\.0: Input should be greater than 0"),
    (lambda m: m["preprocessing"]["output_names"].reverse(), r"output_names .* do not follow"),
    (lambda m: m["score_stats"]["precision"].pop(), r"score_stats\.precision has shape \(2, 31, 31\); "
                                                    r"the network's 31 .*\(x 3 member\(s\)\) need \(3, 31, 31\)"),
    (_set("training", "members", 2), r"score_stats\.mean has shape \(93,\).* need \(62,\)"),
    (lambda m: m["score_stats"].pop("mean"), r"score_stats\.mean is missing"),
    (_set("detector_params", "log_columns", []), r"detector_params\.log_columns \[\] differ"),
])
def test_inconsistent_manifest_is_refused_with_reason(folder, change, message):
    read_manifest(folder)  # the original folder is fine
    _edit(folder, change)
    with pytest.raises(ArtifactError, match=message):
        read_manifest(folder)


def test_negative_definite_precision_is_refused(folder):
    """One member's precision flipped (the folder holds the defaults' 3 networks)."""
    def flip(m):
        m["score_stats"]["precision"][1] = [[-v for v in row] for row in m["score_stats"]["precision"][1]]
    _edit(folder, flip)
    with pytest.raises(ArtifactError, match="not positive semi-definite"):
        read_manifest(folder)


def test_deeply_nested_json_is_refused_not_a_recursion_error(folder):
    (folder / MANIFEST_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ArtifactError, match="nested too deeply"):
        read_manifest(folder)


def test_network_width_is_checked(folder):
    m = json.loads((folder / MANIFEST_FILE).read_text())
    check_manifest_semantics(m, network_input_width=31)
    with pytest.raises(ValueError, match="network takes 30 inputs but the preprocessing gives 31"):
        check_manifest_semantics(m, network_input_width=30)
