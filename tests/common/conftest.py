import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Decoded-image caches of these tests go to a temporary folder, never to ~/.cache."""
    cache = tmp_path_factory.mktemp("sesemi-cache")
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(cache))
    return cache
