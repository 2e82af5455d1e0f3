"""A SignCut in NumPy's world: immutability (also after pickling and copying), truth value and
scalar conversions, and NumPy's type promotion of the products."""
import copy
import pickle

import numpy as np
import pytest

import signcut
from signcut import SignCut
from reference import pack


def random_signcut(shape, width, seed=0, outliers=0):
    rng = np.random.default_rng(seed)
    signs = [pack(rng.choice([-1.0, 1.0], size=(width, d))) for d in shape]
    sparse = None
    if outliers:
        size = int(np.prod(shape))
        index = np.sort(rng.choice(size, outliers, replace=False))
        sparse = (index, rng.standard_normal(outliers).astype(np.float16), 3)
    return SignCut(shape, signs, rng.standard_normal(width), outliers=sparse)


def stored_arrays(sc):
    arrays = list(sc.signs) + [sc.coef, sc.errors]
    if sc.outliers is not None:
        arrays += [sc.outliers.index, sc.outliers.values]
    return arrays


def assert_frozen(sc):
    """No stored array, nor its base, can be written to or made writeable."""
    for a in stored_arrays(sc):
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a.setflags(write=True)
        with pytest.raises(ValueError):
            a[:1].setflags(write=True)                 # a view of it neither
        with pytest.raises((ValueError, AttributeError)):
            a.base.setflags(write=True)
        assert not isinstance(a.base, np.ndarray)


# ------------------------------------------------------------------ immutability
def test_stored_arrays_cannot_be_made_writeable():
    A = np.random.default_rng(0).standard_normal((40, 30)).astype(np.float32)
    for sc in (signcut.decompose(A, width=4, seed=0, outliers=0.02),
               signcut.decompose(A.reshape(4, 10, 30), width=3, seed=0),
               random_signcut((5, 70), 6, outliers=4), random_signcut((3, 4), 0)):
        assert_frozen(sc)
        for other in (pickle.loads(pickle.dumps(sc)), copy.deepcopy(sc), copy.copy(sc),
                      sc.truncate(sc.width // 2), sc.T):
            assert_frozen(other)
            np.testing.assert_array_equal(other.expand(), sc.truncate(other.width).expand()
                                          if other.shape == sc.shape else sc.expand().T)


def test_constructor_copies_unless_told_not_to():
    rng = np.random.default_rng(1)
    s, t = pack(rng.choice([-1.0, 1.0], (2, 9))), pack(rng.choice([-1.0, 1.0], (2, 5)))
    coef = np.array([1.0, -2.0], np.float32)
    sc = SignCut((9, 5), [s, t], coef)
    before = sc.expand()
    s[:] = 0
    coef[:] = 7                                         # the caller's arrays are its own
    assert s.flags.writeable and coef.flags.writeable
    np.testing.assert_array_equal(sc.expand(), before)
    taken = SignCut((9, 5), [s, t], coef, copy=False)   # taken over: shares the memory
    assert np.shares_memory(taken.coef, coef) and np.shares_memory(taken.signs[0], s)
    assert_frozen(taken)


def test_pickle_round_trip_is_exact_and_drops_caches():
    sc = random_signcut((70, 65), 9, outliers=5)
    sc @ np.ones(65)                                    # caches sign layouts
    back = pickle.loads(pickle.dumps(sc))
    assert "_product_lanes" not in back.__dict__
    for a, b in zip(stored_arrays(sc), stored_arrays(back)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back @ np.ones(65), sc @ np.ones(65))


# ------------------------------------------------------------------ truth value, scalars
def test_truth_value_and_scalars_as_ndarray():
    sc = random_signcut((3, 4), 5)
    X = sc.expand()
    for conv in (bool,):
        with pytest.raises(ValueError, match="ambiguous"):
            conv(sc)
        with pytest.raises(ValueError, match="ambiguous"):
            conv(X)
    for conv in (float, int, complex):
        with pytest.raises(TypeError):
            conv(sc)
    one = SignCut((1, 1), [np.zeros((1, 1), np.uint64)] * 2, [2.5])
    assert bool(one) and float(one) == 2.5 and int(one) == 2 and complex(one) == 2.5
    zero = SignCut((1,), [np.zeros((1, 1), np.uint64)], [0.0])
    assert not bool(zero)
    assert not SignCut((1,), [np.zeros((0, 1), np.uint64)], [])       # no cut: zero


# ------------------------------------------------------------------ type promotion
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int8, np.bool_,
                                   np.float16, np.uint32])
def test_products_promote_like_numpy(dtype):
    sc = random_signcut((6, 5), 4, outliers=2)
    X = sc.expand()
    x = (np.arange(5) % 3).astype(dtype)
    y = (np.arange(12) % 2).reshape(2, 6).astype(dtype)
    for got, want in ((sc @ x, X @ x), (y @ sc, y @ X), (np.matmul(sc, x), np.matmul(X, x))):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
