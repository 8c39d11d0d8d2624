"""Where the cache lives: ``$SPIKESHIELD_CACHE``, else ``$XDG_CACHE_HOME/spikeshield``, else
``~/.cache/spikeshield`` (issue 20)."""

from pathlib import Path

from spikeshield.io import cache_dir


def test_spikeshield_cache_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKESHIELD_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"


def test_xdg_cache_home_is_honoured(monkeypatch, tmp_path):
    monkeypatch.delenv("SPIKESHIELD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "spikeshield"


def test_home_cache_otherwise_and_a_relative_xdg_is_ignored(monkeypatch, tmp_path):
    monkeypatch.delenv("SPIKESHIELD_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    for xdg in (None, "", "relative/cache"):
        if xdg is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert cache_dir() == Path(tmp_path) / ".cache" / "spikeshield", xdg
