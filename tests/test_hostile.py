"""Hostile input: absurd arguments, special files, tampered files, memory limits.

Each class of attack gets a clear exception (or a refusal on the command line) and leaves the
user's data as it was; nothing here may crash the process or take the machine down.
"""
import numpy as np
import pytest

import signcut
from signcut import _array


# ------------------------------------------------------------------ thread counts
@pytest.mark.parametrize("n_threads", [3, 64, 4096])
def test_more_threads_than_cores_are_clamped(n_threads):
    A = np.random.default_rng(0).standard_normal((300, 200))
    ref = signcut.decompose(A, width=20, seed=1, n_threads=1)
    r = signcut.decompose(A, width=20, seed=1, n_threads=n_threads)
    assert np.array_equal(r.coef, ref.coef)
    assert np.array_equal(r.expand(n_threads=n_threads), ref.expand(n_threads=1))
    x = np.ones(200, np.float32)
    assert np.array_equal(_array.matmul(r, x, n_threads=n_threads), _array.matmul(ref, x, 1))
    T = np.random.default_rng(0).standard_normal((6, 7, 8))
    t1 = signcut.decompose(T, width=5, seed=1, n_threads=1)
    t2 = signcut.decompose(T, width=5, seed=1, n_threads=n_threads)
    assert np.array_equal(t1.coef, t2.coef)


@pytest.mark.parametrize("n_threads", [4097, 20000, 100000, 2**31, 2**64, -2, 0])
def test_absurd_thread_counts_are_refused(n_threads):
    A = np.ones((4, 4))
    with pytest.raises(ValueError, match="n_threads"):
        signcut.decompose(A, width=1, n_threads=n_threads)
    r = signcut.decompose(A, width=1)
    with pytest.raises(ValueError, match="n_threads"):
        r.expand(n_threads=n_threads)


@pytest.mark.parametrize("n_threads", [2.5, "2", True, None.__class__])
def test_thread_counts_of_other_types_are_refused(n_threads):
    with pytest.raises(TypeError, match="n_threads"):
        signcut.decompose(np.ones((4, 4)), width=1, n_threads=n_threads)
