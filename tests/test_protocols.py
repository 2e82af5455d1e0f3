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


def test_an_array_without_a_copy_is_refused_where_numpy_can_ask_for_one():
    sc = random_signcut((3, 4), 2)
    np.testing.assert_array_equal(np.asarray(sc), sc.expand())
    np.testing.assert_array_equal(np.asarray(sc, dtype=np.float64), sc.expand())
    assert np.asarray(sc, dtype=np.float64).dtype == np.float64
    if int(np.__version__.split(".")[0]) >= 2:
        for make in (lambda: np.asarray(sc, copy=False), lambda: np.array(sc, copy=False)):
            with pytest.raises(ValueError, match="copy=False"):
                make()
    else:               # NumPy 1.x: copy=False is "copy if needed", __array__ is not told
        np.testing.assert_array_equal(np.array(sc, copy=False), sc.expand())


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


# ------------------------------------------------------------------ NumPy functions (NEP 18)
from signcut import _dispatch                                    # noqa: E402
from test_algebra import SHAPES, random_signcut as rsc, tensorized  # noqa: E402


def dense(x):
    return x.expand() if isinstance(x, SignCut) else np.asarray(x)


def check(got, want, kind=None, scale=1.0):
    """got (compressed or not, as ``kind`` says) equal to NumPy's ``want`` on dense arrays."""
    if kind is not None:
        assert isinstance(got, SignCut) == (kind == _dispatch.SIGNCUT), (type(got), kind)
    g = dense(got)
    assert np.shape(g) == np.shape(want)
    np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(want, np.float64),
                               rtol=2e-5, atol=2e-5 * max(1.0, scale))


def cases():
    out = []
    for shape in SHAPES:
        for width, outliers in ((0, 0), (5, 0), (4, 3)):
            out.append(rsc(shape, width, seed=len(shape) + width, outliers=outliers))
    return out


@pytest.mark.parametrize("sc", cases(), ids=repr)
def test_functions_against_numpy(sc):
    X = sc.expand()
    s = float(np.abs(sc.coef).sum()) + 10
    v = np.linspace(-1, 1, sc.shape[-1])
    S, M = _dispatch.SIGNS, _dispatch.SIGNCUT
    check(np.sum(sc), np.sum(X), S, s * X.size)
    check(np.sum(sc, axis=0, keepdims=True), np.sum(X, axis=0, keepdims=True), S, s * X.size)
    check(np.mean(sc, axis=-1), np.mean(X, axis=-1), S, s)
    check(np.sum(sc, dtype=np.float64), np.sum(X, dtype=np.float64), S, s * X.size)
    check(np.add.reduce(sc), np.add.reduce(X), S, s * X.size)
    check(np.var(sc), np.var(X.astype(np.float64)), S, s * s)
    check(np.std(sc, ddof=1), np.std(X.astype(np.float64), ddof=1) if X.size > 1 else np.nan, S, s)
    check(np.linalg.norm(sc), np.linalg.norm(X), S, s)
    check(np.vdot(sc, sc), np.vdot(X, X), S, s * s * X.size)
    check(np.vdot(sc, X * 2), np.vdot(X, X * 2), S, s * s * X.size)
    check(np.tensordot(sc, v, axes=1), np.tensordot(X, v, axes=1), M if sc.ndim > 1 else S, s * 10)
    check(np.tensordot(sc, sc, axes=sc.ndim), np.tensordot(X, X, axes=sc.ndim), S, s * s * X.size)
    check(np.inner(sc, v), np.inner(X, v), M if sc.ndim > 1 else S, s * 10)
    check(np.dot(sc, v), np.dot(X, v), None, s * 10)
    check(np.transpose(sc), np.transpose(X), M, s)
    check(np.negative(sc), -X, M, s)
    check(np.multiply(2, sc), 2 * X, M, s)
    check(np.multiply(sc, sc), X * X, M, s * s)
    check(np.add(sc, 1.5), X + 1.5, M, s)
    check(np.subtract(2, sc), 2 - X, M, s)
    check(np.copy(sc), X, M, s)
    check(np.reshape(sc, -1), X.reshape(-1), M, s)
    check(np.ravel(sc), X.ravel(), M, s)
    check(np.expand_dims(sc, 0), np.expand_dims(X, 0), M, s)
    check(np.squeeze(sc), np.squeeze(X), M if np.squeeze(X).ndim else S, s)
    check(np.broadcast_to(sc, (2,) + sc.shape), np.broadcast_to(X, (2,) + X.shape), M, s)
    assert (np.shape(sc), np.ndim(sc), np.size(sc), np.size(sc, 0)) == \
        (X.shape, X.ndim, X.size, X.shape[0])
    assert np.result_type(sc, np.float64) == np.float64 and np.result_type(sc) == np.float32
    assert not np.iscomplexobj(sc) and np.isrealobj(sc)
    assert np.may_share_memory(sc, sc) == (sc.width > 0) and not np.may_share_memory(sc, X)
    assert not np.shares_memory(sc, np.copy(sc))
    for like, want in ((np.zeros_like, 0), (np.ones_like, 1)):
        got = like(sc)
        assert got.shape == X.shape and got.dtype == np.float32 and (got == want).all()
    assert np.full_like(sc, 7, dtype=np.int8).dtype == np.int8
    if sc.ndim >= 2:
        check(np.swapaxes(sc, 0, -1), np.swapaxes(X, 0, -1), M, s)
        check(np.moveaxis(sc, 0, -1), np.moveaxis(X, 0, -1), M, s)
        check(np.trace(sc), np.trace(X), S if sc.ndim == 2 else M, s * X.shape[0])
        check(np.diagonal(sc, 1), np.diagonal(X, 1), None, s)
    if sc.ndim == 2:
        check(np.linalg.norm(sc, "fro"), np.linalg.norm(X, "fro"), S, s)
        w = np.linspace(0, 1, sc.shape[0])
        check(np.dot(w, sc), np.dot(w, X), S, s * 10)



@pytest.mark.skipif(not hasattr(np.linalg, "vector_norm"),
                    reason="NumPy < 2 has no array API aliases")
@pytest.mark.parametrize("sc", cases(), ids=repr)
def test_array_api_aliases_against_numpy(sc):
    X = sc.expand()
    s = float(np.abs(sc.coef).sum()) + 10
    v = np.linspace(-1, 1, sc.shape[-1])
    S, M = _dispatch.SIGNS, _dispatch.SIGNCUT
    check(np.linalg.vector_norm(sc), np.linalg.vector_norm(X), S, s)
    check(np.astype(sc, np.float32), X, M, s)
    if sc.ndim >= 2:
        check(np.matrix_transpose(sc), np.matrix_transpose(X), M, s)
        check(np.linalg.diagonal(sc), np.linalg.diagonal(X), None, s)
        check(np.linalg.trace(sc), np.linalg.trace(X), None, s * X.shape[-1])
    if sc.ndim == 2:
        check(np.linalg.matrix_norm(sc), np.linalg.matrix_norm(X), S, s)
        check(np.linalg.matmul(sc, v), np.linalg.matmul(X, v), S, s * 10)


def test_array_api_aliases_are_registered_where_numpy_has_them():
    for name in ("linalg.matmul", "linalg.tensordot", "linalg.vector_norm", "linalg.matrix_norm",
                 "linalg.trace", "linalg.diagonal", "matrix_transpose", "astype"):
        func = _dispatch._numpy_function(name)
        assert (func in _dispatch.TABLE) == (func is not None), name
    assert (_dispatch._numpy_function("linalg.matmul") is None) == (int(np.__version__.split(".")[0]) < 2)


def test_tensorized_functions():
    for sc in tensorized():
        X = sc.expand()
        s = float(np.abs(sc.coef).sum()) + 10
        check(np.sum(sc), X.sum(), _dispatch.SIGNS, s * X.size)
        check(np.linalg.norm(sc), np.linalg.norm(X), _dispatch.SIGNS, s)
        check(np.vdot(sc, X), np.vdot(X, X), _dispatch.SIGNS, s * s * X.size)
        check(np.reshape(sc, -1), X.reshape(-1), _dispatch.SIGNCUT, s)
        check(np.multiply(sc, 3), X * 3, _dispatch.SIGNCUT, s)
        check(np.transpose(sc), X.T, None, s)                   # through the dense array
        check(np.sum(sc, axis=0), X.sum(axis=0), None, s * X.size)


def test_functions_with_other_arguments_go_through_the_dense_array():
    sc = rsc((4, 5), 3, 1)
    X = sc.expand()
    out = np.zeros(5, np.float32)
    assert np.sum(sc, axis=0, out=out) is out
    np.testing.assert_allclose(out, X.sum(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.sum(sc, where=X > 0), np.sum(X, where=X > 0), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(sc, ord=2), np.linalg.norm(X, ord=2), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(sc, axis=1), np.linalg.norm(X, axis=1), rtol=1e-5)
    np.testing.assert_allclose(np.exp(sc), np.exp(X), rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([sc, sc]), np.concatenate([X, X]))
    np.testing.assert_allclose(np.max(sc), X.max())
    res = np.add(sc, np.ones(5))
    assert isinstance(res, np.ndarray)
    np.testing.assert_allclose(res, X + 1, rtol=1e-6)
    np.testing.assert_allclose(np.dot(sc, sc.T.expand()), X @ X.T, rtol=1e-5, atol=1e-5)
    target = np.zeros((4, 5), np.float32)
    assert np.multiply(sc, 2, out=(target,)) is target
    np.testing.assert_array_equal(target, (2 * sc).expand())
    with pytest.raises(TypeError):
        np.multiply(X, 2, out=(sc,))


def test_ufuncs_are_the_operators():
    sc, other = rsc((6, 70), 4, 1, outliers=3), rsc((6, 70), 3, 2, outliers=2)
    pairs = [(np.multiply(2, sc), 2 * sc), (np.multiply(sc, np.float32(2)), sc * 2),
             (np.add(sc, other), sc + other), (np.subtract(sc, other), sc - other),
             (np.negative(sc), -sc), (np.multiply(sc, other), sc * other),
             (np.divide(sc, 4), sc / 4), (np.float64(3) * sc, 3 * sc), (np.add(1, sc), 1 + sc)]
    for a, b in pairs:
        assert isinstance(a, SignCut) and isinstance(b, SignCut)
        for x, y in zip(stored_arrays(a), stored_arrays(b)):
            np.testing.assert_array_equal(x, y)


def test_in_place_operators_rebind():
    sc = rsc((3, 4), 2, 1)
    before = sc
    X = sc.expand()
    sc += 1
    sc *= 2
    sc -= before
    sc /= 4
    assert isinstance(sc, SignCut) and sc is not before
    np.testing.assert_allclose(sc.expand(), ((X + 1) * 2 - X) / 4, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(before.expand(), X)


# ------------------------------------------------------------------ the expansion setting
def test_expansion_warns_and_raises_above_the_threshold():
    sc = rsc((30, 40), 3, 1)                                    # 4800 bytes dense
    with signcut.options(expand_threshold=4800):
        np.exp(sc)                                               # at the threshold: quiet
    with signcut.options(expand_threshold=4799):
        with pytest.warns(signcut.ExpansionWarning, match="np.exp expands .* 4800 bytes") as w:
            np.exp(sc)
        assert w[0].filename == __file__                         # points at the caller
        with pytest.warns(signcut.ExpansionWarning) as w:
            sc + np.ones(40)                                     # through NumPy's mixin
        assert w[0].filename == __file__
        with pytest.warns(signcut.ExpansionWarning, match="np.asarray"):
            np.asarray(sc)
        with signcut.options(expand="error"):
            with pytest.raises(signcut.ExpansionError, match="4800 bytes"):
                np.exp(sc)
            with pytest.raises(signcut.ExpansionError):
                sc + np.ones(40)
            with signcut.options(expand_threshold=0), pytest.raises(signcut.ExpansionError):
                tensorized()[1][0]
            assert isinstance(2 * sc + sc * sc, SignCut)          # compressed: fine
            np.testing.assert_array_equal(sc.expand(), sc.expand())   # explicit: fine
        with signcut.options(expand="allow"):
            np.exp(sc)
    assert signcut.get_options() == {"expand": "warn", "expand_threshold": 1 << 27}


def test_set_options_returns_the_previous_settings():
    before = signcut.set_options(expand="error", expand_threshold=10)
    try:
        assert signcut.get_options() == {"expand": "error", "expand_threshold": 10}
        with pytest.raises(signcut.ExpansionError):
            np.asarray(rsc((3, 4), 1))
    finally:
        back = signcut.set_options(**before)
    assert back == {"expand": "error", "expand_threshold": 10}
    assert signcut.get_options() == before
    for bad in (dict(expand="never"), dict(expand_threshold=-1), dict(expand_threshold=1.5),
                dict(expand_threshold=True)):
        with pytest.raises(ValueError):
            signcut.set_options(**bad)


def test_huge_signcut_refuses_to_expand_without_allocating():
    big = SignCut((70_000, 40_000), [np.zeros((1, 1094), np.uint64), np.zeros((1, 625), np.uint64)],
                  [1.0])
    with signcut.options(expand="error"):
        for op in (np.asarray, np.exp, lambda x: x + np.ones(40_000), lambda x: np.max(x)):
            with pytest.raises(signcut.ExpansionError, match="11200000000 bytes"):
                op(big)
    assert isinstance(big * 2 + 1, SignCut)


def test_readme_has_the_table_of_operations():
    import os
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "README.md")).read()
    assert _dispatch.operations_table() in readme
    for func, entry in _dispatch.TABLE.items():         # every entry's row is in the table
        assert entry.name in readme
