import numpy as np
import pytest

from signcut import _core

ISAS = _core.supported_kernels()


@pytest.fixture(params=ISAS)
def isa(request):
    return request.param


def on_every_kernel_set(fn):
    """[fn() with each kernel set the CPU supports], scalar first; the chosen set is restored."""
    prev = _core.use_kernels("scalar")
    try:
        out = []
        for name in ISAS:
            _core.use_kernels(name)
            out.append(fn())
        return out
    finally:
        _core.use_kernels(prev)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# CI runs a fixed set of generated examples (CI=true there), so a submission does not land or
# fail by luck; local runs keep exploring new ones.
from hypothesis import settings  # noqa: E402
import os  # noqa: E402

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
