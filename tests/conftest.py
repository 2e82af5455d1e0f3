import numpy as np
import pytest

from signcut import _core

ISAS = _core.supported_kernels()


@pytest.fixture(params=ISAS)
def isa(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
