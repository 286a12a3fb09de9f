import pytest


@pytest.fixture(autouse=True, scope="session")
def _compile_cache_in_tmp(tmp_path_factory):
    """``fnn train`` keeps compiled programs on disk: in the tests, in a temporary directory, not ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FNN_CACHE_DIR", str(tmp_path_factory.mktemp("xla-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _no_compile_cache_left_on():
    """``fnn train`` turns JAX's persistent compilation cache on for its process; a test that runs it in
    the test process must not leave it on for the tests after it in the same worker (XLA then also
    serialises their programs, and it crashes on programs compiled with ``helpers.QUICK_COMPILE``)."""
    yield
    import jax

    if jax.config.jax_compilation_cache_dir is not None:
        from fnn.scale import compile_cache

        compile_cache.disable_compile_cache()
