"""Checks of the classroom exercises (docs/exercises.md). A check skips while its exercise still
raises NotImplementedError, so the normal test run stays green and fast."""
import pytest


def _attempt(fn, *args, **kwargs):
    """fn(*args, **kwargs), or skip the calling check while fn is still the exercise's stub."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        pytest.skip(f"exercise not done yet: {fn.__module__}.{fn.__name__} raises NotImplementedError")


@pytest.fixture
def attempt():
    return _attempt


@pytest.fixture
def probe():
    """probe(fn, *args): skip now if fn is the stub; any other outcome (even an error) means it is written."""
    def check(fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except NotImplementedError:
            pytest.skip(f"exercise not done yet: {fn.__module__}.{fn.__name__} raises NotImplementedError")
        except Exception:
            pass
    return check


@pytest.fixture(autouse=True)
def one_thread():
    """The checks use tiny models: one thread is fastest, and spares a machine that is busy training."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
