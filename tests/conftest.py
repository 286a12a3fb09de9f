import pytest


@pytest.fixture(autouse=True, scope="session")
def _compile_cache_in_tmp(tmp_path_factory):
    """``fnn train`` keeps compiled programs on disk: in the tests, in a temporary directory, not ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FNN_CACHE_DIR", str(tmp_path_factory.mktemp("xla-cache")))
    yield
    mp.undo()
