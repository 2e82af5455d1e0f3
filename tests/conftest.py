import importlib.machinery
import os
import sys

import numpy as np
import pytest

# `python -m pytest` puts the checkout first on sys.path: without an in-place build its source
# folder would shadow the installed signcut. Then the tests use the installed one.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not any(os.path.exists(os.path.join(_CHECKOUT, "signcut", "_core" + suffix))
           for suffix in importlib.machinery.EXTENSION_SUFFIXES):
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _CHECKOUT]

import signcut  # noqa: E402
from signcut import _core  # noqa: E402

# The folder holding the signcut these tests import (a checkout built in place, or
# site-packages): subprocesses of the tests run the same one.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(signcut.__file__)))


def gaussian(shape, seed=0, dtype=np.float32):
    """Standard normal entries of the given shape and dtype (float32 by default)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_bit_identical(a, b):
    """Two SignCuts hold the same bits: signs, coefficients, errors, norm and stop reason."""
    assert a.shape == b.shape and a.width == b.width and a.stopped_by == b.stopped_by
    for x, y in zip(a.signs, b.signs):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.coef.view(np.uint32), b.coef.view(np.uint32))
    np.testing.assert_array_equal(a.errors.view(np.uint64), b.errors.view(np.uint64))
    assert a.norm == b.norm


def subprocess_env(*prefix, **extra):
    """os.environ with `extra` set and PYTHONPATH = prefix folders, PACKAGE_PARENT, then the
    PYTHONPATH already set: a child Python imports the signcut these tests import (run it with
    -P, or from a script's folder, so that an unbuilt checkout is not put first)."""
    path = [*prefix, PACKAGE_PARENT, os.environ.get("PYTHONPATH")]
    return dict(os.environ, **extra, PYTHONPATH=os.pathsep.join(p for p in path if p))

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

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
