"""SignCut as a read-only NumPy array: indexing, transpose, sum/mean and @ computed from the
signs, checked against the expanded array."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import signcut
from signcut import SignCut
from signcut._indexing import parse_index
from reference import pack

SHAPES = [(1,), (70,), (65,), (64, 65), (1, 70), (7, 3), (3, 65, 7), (70, 1, 3),
          (3, 7, 1, 64), (3, 1, 7, 3, 65)]
WIDTHS = [0, 1, 37, 130]


def random_signcut(shape, width, seed=0):
    rng = np.random.default_rng(seed)
    signs = [pack(rng.choice([-1.0, 1.0], size=(width, d))) for d in shape]
    return SignCut(shape, signs, rng.standard_normal(width) / (1 + np.arange(width)))


def assert_close(got, want, sc):
    """Equal up to float32 rounding of sums over the cuts."""
    if isinstance(got, SignCut):
        got = got.expand()
    assert np.shape(got) == np.shape(want)
    atol = 1e-5 * max(1.0, float(np.abs(sc.coef).sum()))
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=1e-5, atol=atol)


@pytest.fixture(params=[(s, w) for s in SHAPES for w in WIDTHS], ids=str)
def case(request):
    shape, width = request.param
    sc = random_signcut(shape, width, seed=len(shape) * 1000 + width)
    return sc, sc.expand()


@pytest.fixture(scope="module")
def decomposed():
    A = np.random.default_rng(7).standard_normal((67, 45)).astype(np.float32)
    sc = signcut.decompose(A, width=20, seed=0)
    return sc, sc.expand()


@pytest.fixture
def no_expand(monkeypatch):
    """Fail on any expansion of a SignCut."""
    def refuse(*args, **kwargs):
        raise AssertionError("expanded")
    monkeypatch.setattr(SignCut, "expand", refuse)


def test_width_zero_is_zeros():
    sc = random_signcut((3, 5, 2), 0)
    assert (sc[1:, ::-1] == 0).all() and sc[0, 0, 0] == 0
    assert sc.sum() == 0 and (sc.mean(axis=1) == 0).all()
    m = random_signcut((4, 6), 0)
    assert (m @ np.ones(6) == 0).all() and (np.ones((2, 4)) @ m == 0).all()


# ------------------------------------------------------------------ indexing
def basic_keys(shape):
    ndim = len(shape)
    last = tuple(d - 1 for d in shape)
    keys = [0, -1, (), Ellipsis, None, slice(None), slice(None, None, -1), slice(0, 0),
            slice(5, 1), slice(-2, None), slice(None, None, 3), slice(None, None, -2),
            slice(100, -100, -1), last, tuple(-d for d in shape), last + (Ellipsis,),
            (Ellipsis, 0), (Ellipsis, -1, None), (None, Ellipsis, None), (0, None, Ellipsis),
            (np.int64(0),), np.array(0), (np.array(-1), Ellipsis)]
    if ndim >= 2:
        keys += [(slice(1, None), Ellipsis, slice(None, None, -1)), (slice(None), 0),
                 (0, slice(None, None, -1)), (slice(None), None, -1),
                 (Ellipsis, slice(1, 2), 0), (slice(None, 1), Ellipsis, slice(-1, None))]
    return keys


def advanced_keys(shape):
    ndim, d0 = len(shape), shape[0]
    keys = [[0], [-1, 0, -1], np.array([], np.intp), [], np.arange(d0)[::-1], [[0], [-1]],
            np.arange(d0) % 2 == 0, np.zeros(d0, bool), [True] * d0,
            (Ellipsis, [0, 0]), (None, [-1], Ellipsis)]
    if ndim >= 2:
        keys += [(0, [0, -1]), (slice(None), [0, -1]), ([0], slice(None, None, -1)),
                 (slice(None), np.ones(shape[1], bool)), ([0], None, 0), (0, None, [0]),
                 (None, 0, [0, 0]), ([0], Ellipsis, 0), (Ellipsis, 0, [0])]
    if ndim >= 3:
        keys += [(0, slice(None), [0, -1]), (slice(None), 0, [0]), ([[0, 0]], slice(None), -1),
                 (slice(None), [0], Ellipsis, 0), (slice(None), [0], 0, Ellipsis)]
    return keys


def expected_type(want, basic):
    """A basic index gives a SignCut unless the answer is a scalar, 0-d or empty."""
    if basic and isinstance(want, np.ndarray) and want.ndim and want.size:
        return SignCut
    return type(want)


def test_index_basic(case):
    sc, X = case
    for key in basic_keys(sc.shape):
        got, want = sc[key], X[key]
        assert type(got) is expected_type(want, True), key
        assert got.dtype == np.float32
        assert_close(got, want, sc)


def test_index_advanced(case):
    sc, X = case
    for key in advanced_keys(sc.shape):
        got, want = sc[key], X[key]
        assert type(got) is type(want), key
        assert_close(got, want, sc)


def test_index_decomposed(decomposed):
    sc, X = decomposed
    for key in basic_keys(sc.shape) + advanced_keys(sc.shape) + [(slice(3, 60, 7), [4, 44])]:
        assert_close(sc[key], X[key], sc)


def test_index_does_not_expand(no_expand):
    sc = random_signcut((5, 6, 7), 37)
    assert sc[1:3, ::-2, [0, 6]].shape == (2, 3, 2)
    assert sc[1:3, ::-2, None, 0].shape == (2, 3, 1)
    assert isinstance(sc[0, 0, 0], np.float32)


def test_iteration():
    sc = random_signcut((4, 3), 5)
    X = sc.expand()
    rows = list(sc)
    assert len(rows) == 4
    assert_close(np.stack(rows), X, sc)


@st.composite
def index_expressions(draw, shape, advanced=False):
    """A random index for ``shape``: integers, slices (any steps), at most one ``...`` and
    ``None``s; with ``advanced``, one integer or boolean array on one axis."""
    ndim = len(shape)
    used = draw(st.integers(0, ndim))
    ellipsis = draw(st.none() | st.integers(0, used))
    array_at = draw(st.integers(0, used - 1)) if advanced and used else None
    items = []
    for i in range(used):
        if ellipsis is not None and i == ellipsis:
            items.append(Ellipsis)
        axis = i if ellipsis is None or i < ellipsis else ndim - used + i
        d = shape[axis]
        if i == array_at:
            if draw(st.booleans()):
                items.append(np.array(draw(st.lists(st.booleans(), min_size=d, max_size=d))))
            else:
                items.append(draw(st.lists(st.integers(-d, d - 1), max_size=4)))
        elif draw(st.booleans()):
            items.append(draw(st.integers(-d, d - 1)))
        else:
            bound = st.none() | st.integers(-d - 2, d + 2)
            step = st.none() | st.integers(-3, 3).filter(bool)
            items.append(slice(draw(bound), draw(bound), draw(step)))
    if ellipsis == used:
        items.append(Ellipsis)
    for _ in range(draw(st.integers(0, 2))):
        items.insert(draw(st.integers(0, len(items))), None)
    return tuple(items) if len(items) != 1 or draw(st.booleans()) else items[0]


@st.composite
def signcut_and_key(draw, advanced=False):
    shape = draw(st.sampled_from(SHAPES[:-1] + [(3, 1, 7, 3, 5), (2, 3, 1, 2, 3)]))
    width = draw(st.sampled_from([0, 1, 5, 37]))
    seed = draw(st.integers(0, 2**16))
    return random_signcut(shape, width, seed), draw(index_expressions(shape, advanced))


@settings(max_examples=300, deadline=None)
@given(signcut_and_key())
def test_index_random_basic(args):
    sc, key = args
    want = sc.expand()[key]
    got = sc[key]
    assert type(got) is expected_type(want, True)
    assert_close(got, want, sc)


@settings(max_examples=300, deadline=None)
@given(signcut_and_key(advanced=True))
def test_index_random_advanced(args):
    sc, key = args
    want = sc.expand()[key]
    got = sc[key]
    assert type(got) is expected_type(want, not parse_index(key, sc.shape).advanced)
    assert_close(got, want, sc)


@pytest.mark.parametrize("key", [3, -4, (0, 5), (0, -6), (0, 0, 0), (Ellipsis, Ellipsis),
                                 (Ellipsis, 0, 0, 0), [3], (0, [0, 5]), (slice(None), [-6])])
def test_index_out_of_range(key):
    sc = random_signcut((3, 5), 4)
    with pytest.raises(IndexError):
        sc[key]


@pytest.mark.parametrize("key", [1.0, "a", [0.5], (0, 1.5), np.array([1.0]), [True, False],
                                 np.ones((3, 4), bool), ([0, 1], [1, 2, 3]),
                                 [[0, 1], [slice(None)]]])
def test_index_unsupported(key):
    sc = random_signcut((3, 5), 4)
    with pytest.raises(IndexError):
        sc[key]


# ------------------------------------------------------------------ transpose
def test_transpose(case):
    sc, X = case
    ndim = sc.ndim
    perms = [(), (None,), (tuple(range(ndim))[::-1],), tuple(range(ndim)),
             tuple(a - ndim for a in range(ndim)), (list(np.roll(range(ndim), 1)),)]
    for axes in perms:
        t = sc.transpose(*axes)
        assert isinstance(t, SignCut)
        assert_close(t.expand(), X.transpose(*axes), sc)
    assert_close(sc.T.expand(), X.T, sc)
    assert sc.T.T.shape == sc.shape and sc.T.width == sc.width


def test_transpose_shares_only_read_only_arrays():
    sc = random_signcut((3, 4, 5), 6)
    t = sc.transpose(2, 0, 1)
    assert t.shape == (5, 3, 4)
    for a in t.signs + (t.coef,):
        with pytest.raises(ValueError):
            a.setflags(write=True)


@pytest.mark.parametrize("axes,error", [((0, 0, 1), ValueError), ((0, 1), ValueError),
                                        ((0, 1, 3), np.exceptions.AxisError),
                                        (([],), ValueError)])
def test_transpose_errors(axes, error):
    with pytest.raises(error):
        random_signcut((2, 3, 4), 3).transpose(*axes)


# ------------------------------------------------------------------ sum and mean
def axis_forms(ndim):
    forms = [None, ()] + list(range(ndim)) + list(range(-ndim, 0))
    forms += [tuple(range(ndim)), tuple(range(ndim))[::-1], (0, -1) if ndim > 1 else (0,)]
    if ndim >= 3:
        forms += [(1, -1), (-ndim, 1)]
    return forms


def test_sum_mean(case):
    sc, X = case
    X64 = X.astype(np.float64)
    for axis in axis_forms(sc.ndim):
        for keepdims in (False, True):
            for name in ("sum", "mean"):
                got = getattr(sc, name)(axis=axis, keepdims=keepdims)
                want = getattr(X, name)(axis=axis, keepdims=keepdims)
                assert type(got) is type(want), (name, axis, keepdims)
                assert np.asarray(got).dtype == np.float32
                exact = getattr(X64, name)(axis=axis, keepdims=keepdims)
                count = X.size // np.asarray(exact).size if name == "sum" else 1
                np.testing.assert_allclose(got, exact, rtol=1e-5,
                                           atol=1e-5 * count * max(1, np.abs(sc.coef).sum()))


def test_sum_decomposed(decomposed, no_expand):
    sc, X = decomposed
    assert np.isclose(sc.sum(), X.astype(np.float64).sum(), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(sc.mean(axis=0), X.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sc.sum(axis=-1, keepdims=True), X.sum(axis=-1, keepdims=True),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("axis,error", [(3, np.exceptions.AxisError),
                                        (-4, np.exceptions.AxisError),
                                        ((0, 0), ValueError), ((1, -2), ValueError),
                                        (1.0, TypeError), ([0, 1], TypeError)])
def test_sum_errors(axis, error):
    sc = random_signcut((2, 3, 4), 3)
    with pytest.raises(error):
        sc.sum(axis=axis)
    with pytest.raises(error):
        sc.mean(axis=axis)


# ------------------------------------------------------------------ matmul
MATRIX_CASES = [((m, n), w) for m, n in [(1, 1), (64, 65), (1, 70), (7, 3), (70, 65)]
                for w in WIDTHS]


@pytest.mark.parametrize("shape,width", MATRIX_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul(shape, width, dtype):
    sc = random_signcut(shape, width, seed=width)
    X = sc.expand().astype(np.float64)
    m, n = shape
    rng = np.random.default_rng(1)
    for x in (rng.standard_normal(n), rng.standard_normal((n, 3)), rng.standard_normal((n, 1)),
              rng.standard_normal((2, n, 4))):
        x = x.astype(dtype)
        got = sc @ x
        assert isinstance(got, np.ndarray) and got.dtype == dtype     # NumPy's promotion
        assert_close(got, X @ x, sc)
    for y in (rng.standard_normal(m), rng.standard_normal((5, m)), rng.standard_normal((2, 1, m))):
        y = y.astype(dtype)
        got = y @ sc
        assert isinstance(got, np.ndarray) and got.dtype == dtype
        assert_close(got, y @ X, sc)
        assert_close(y.tolist() @ sc, y @ X, sc)


def test_matmul_decomposed(decomposed, no_expand):
    sc, X = decomposed
    x = np.linspace(-1, 1, 45)
    y = np.linspace(0, 2, 67 * 2).reshape(2, 67)
    np.testing.assert_allclose(sc @ x, X.astype(np.float64) @ x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y @ sc, y @ X.astype(np.float64), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.matmul(sc, x), X.astype(np.float64) @ x, rtol=1e-4, atol=1e-4)


def test_matmul_errors():
    sc = random_signcut((4, 6), 3)
    for bad in (np.ones(4), np.ones((4, 2)), np.ones((2, 5, 2))):
        with pytest.raises(ValueError):
            sc @ bad
    for bad in (np.ones(6), np.ones((2, 3))):
        with pytest.raises(ValueError):
            bad @ sc
    with pytest.raises(ValueError):
        sc @ np.float64(2.0)
    with pytest.raises(TypeError):
        sc @ np.ones(6, complex)


def test_other_orders_go_through_dense():
    sc = random_signcut((3, 4, 5), 6)
    X = sc.expand()
    assert_close(sc @ np.ones(5), X @ np.ones(5), sc)
    assert_close(np.ones(4) @ sc, np.ones(4) @ X, sc)


# ------------------------------------------------------------------ NumPy interplay
def test_numpy_functions(decomposed):
    sc, X = decomposed
    assert np.asarray(sc).shape == sc.shape and np.asarray(sc).dtype == np.float32
    assert np.allclose(sc, X)
    np.testing.assert_allclose(sc, X)
    np.testing.assert_array_equal(X == sc, np.ones(X.shape, bool))   # ufuncs see the dense array
    np.testing.assert_array_equal(X + sc, 2 * X)
    np.testing.assert_array_equal(np.negative(sc), -X)
    assert (sc.shape, sc.ndim, sc.size, sc.dtype, len(sc)) == (X.shape, 2, X.size, np.float32, 67)
    assert repr(sc).startswith("SignCut(")


def test_signcut_arrays_are_read_only():
    A = np.random.default_rng(0).standard_normal((20, 30)).astype(np.float32)
    s = np.zeros((1, 1), np.uint64)
    t = np.zeros((1, 1), np.uint64)
    coef = np.ones(1, np.float32)
    r = signcut.SignCut((20, 30), (s, t), coef)
    for a in r.signs + (r.coef, r.errors):
        with pytest.raises(ValueError, match="read-only"):
            a[...] = 0
    assert s.flags.writeable and coef.flags.writeable     # the caller's arrays keep theirs
    d = signcut.decompose(A, width=3, seed=0)
    with pytest.raises(ValueError, match="read-only"):
        d.coef[0] = 1.0
