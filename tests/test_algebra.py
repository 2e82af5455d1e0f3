"""Operations that stay compressed, each against expand-then-NumPy: scaling, sums, elementwise
products, broadcasting, basic indexing, contraction, transposes, reshapes, diagonals and
traces, and recompress; on random SignCuts of orders 1 to 5, tensorized ones, with and
without a sparse part, and of width 0."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import signcut
from signcut import SignCut
from reference import pack

SHAPES = [(7,), (65,), (5, 9), (64, 3), (1, 70), (3, 4, 5), (2, 1, 66), (3, 2, 4, 5),
          (2, 3, 1, 2, 3)]


def random_signcut(shape, width, seed=0, outliers=0, tensor=None):
    """Random signs and coefficients; ``outliers`` sparse entries (float16 values scaled by a
    power of two); ``tensor`` = (mode shape, axes) tensorizes it."""
    rng = np.random.default_rng(seed)
    modes, axes = (shape, None) if tensor is None else tensor
    tensor_shape = tuple(np.array(modes)[list(axes)]) if axes is not None else modes
    signs = [pack(rng.choice([-1.0, 1.0], size=(width, d))) for d in tensor_shape]
    size = int(np.prod(shape))
    sparse = None
    if outliers:
        index = np.sort(rng.choice(size, min(outliers, size), replace=False))
        sparse = (index, (rng.standard_normal(len(index)) * 8).astype(np.float16), -2)
    tensorize = None if tensor is None else {"shape": list(shape), "axes": list(axes)}
    return SignCut(tensor_shape, signs, rng.standard_normal(width) / (1 + np.arange(width)),
                   outliers=sparse, tensorize=tensorize)


def ref(x):
    return x.expand().astype(np.float64) if isinstance(x, SignCut) else np.asarray(x, np.float64)


def assert_close(got, want, scale=1.0):
    """A SignCut (or array) equal to the float64 reference up to float32 rounding."""
    assert np.shape(got) == np.shape(want)
    got = ref(got)
    atol = 2e-5 * max(1.0, scale, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=atol)


def coef_scale(*scs):
    return max([1.0] + [float(np.abs(s.coef).sum()) for s in scs])


CASES = [(s, w, o) for s in SHAPES for w in (0, 1, 9) for o in (0, 3)]


@pytest.fixture(params=CASES, ids=str)
def case(request):
    shape, width, outliers = request.param
    sc = random_signcut(shape, width, seed=len(shape) * 100 + width + outliers, outliers=outliers)
    return sc, ref(sc)


def tensorized():
    """Tensorized SignCuts: an image-like split, a permutation only, and order 1 -> 3."""
    return [random_signcut((4, 6), 5, 1, outliers=3, tensor=((2, 2, 3, 2), (0, 2, 1, 3))),
            random_signcut((3, 4, 5), 4, 2, tensor=((3, 4, 5), (2, 0, 1))),
            random_signcut((24,), 3, 3, outliers=2, tensor=((2, 3, 4), (1, 2, 0)))]


def assert_derived(got):
    """A derived SignCut: its error history unknown, its arrays read-only."""
    assert isinstance(got, SignCut)
    assert np.isnan(got.errors).all() and got.norm is None and np.isnan(got.rel_error) \
        or not got.width
    for a in got.signs + (got.coef,):
        assert not a.flags.writeable


# ------------------------------------------------------------------ coefficients
@pytest.mark.parametrize("a", [2, -0.5, 3.7, np.float32(1.5), np.float64(-2.25), True,
                               np.array(4.0), 0])
def test_scale(case, a):
    sc, X = case
    for got, want in ((sc * a, X * float(a)), (a * sc, float(a) * X), (np.multiply(a, sc), X * float(a)),
                      (np.multiply(sc, a), X * float(a))):
        assert isinstance(got, SignCut) and got.orig_dtype == sc.orig_dtype
        assert_close(got, want, coef_scale(sc) * abs(float(a)))
    if a:
        assert_close(sc / a, X / float(a), coef_scale(sc) / abs(float(a)))
        assert_close(np.divide(sc, a), X / float(a), coef_scale(sc) / abs(float(a)))


def test_scale_keeps_the_error_history():
    A = np.random.default_rng(0).standard_normal((30, 20)).astype(np.float32)
    sc = signcut.decompose(A, width=6, seed=0, outliers=0.01)
    for a in (-3.0, 0.25, 5.5):
        got = a * sc
        np.testing.assert_array_equal(got.errors, sc.errors)
        assert got.norm == pytest.approx(abs(a) * sc.norm)
        assert got.rel_error == pytest.approx(np.linalg.norm(a * A - got.expand())
                                              / np.linalg.norm(a * A), rel=1e-4)
    assert (-sc).outliers.values.dtype == np.float16           # exact: sign flip
    assert (sc * 4).outliers.values.dtype == np.float16        # exact: power of two
    assert (sc * 3).outliers.values.dtype == np.float32        # float16 would round
    zero = 0 * sc
    assert zero.rel_error == 0 and zero.norm == 0 and not zero.expand().any()


def test_negation_and_positive(case):
    sc, X = case
    for got in (-sc, np.negative(sc)):
        assert isinstance(got, SignCut)
        np.testing.assert_array_equal(got.expand(), -sc.expand())
    np.testing.assert_array_equal((+sc).expand(), sc.expand())


def test_scalar_errors():
    sc = random_signcut((3, 4), 2)
    with pytest.raises(ZeroDivisionError):
        sc / 0
    with pytest.raises(ValueError, match="not be finite"):
        sc * np.inf
    with pytest.raises(ValueError, match="not be finite"):
        sc + np.nan
    with pytest.raises(OverflowError):
        sc * 1e38 * 1e10


# ------------------------------------------------------------------ sums
def test_add_subtract(case):
    sc, X = case
    other = random_signcut(sc.shape, 4, seed=99, outliers=2)
    Y = ref(other)
    for got, want in ((sc + other, X + Y), (sc - other, X - Y), (other - sc, Y - X),
                      (np.add(sc, other), X + Y), (np.subtract(sc, sc), X - X)):
        assert_derived(got)
        assert_close(got, want, coef_scale(sc, other))


def test_add_scalar_is_one_constant_cut(case):
    sc, X = case
    for got, want in ((sc + 1.5, X + 1.5), (2 + sc, 2 + X), (sc - 3, X - 3), (3 - sc, 3 - X),
                      (np.add(sc, np.float32(0.25)), X + 0.25)):
        assert isinstance(got, SignCut) and got.width == sc.width + 1
        assert_close(got, want, coef_scale(sc) + 3)
    assert (sc + 0).width == sc.width


def test_broadcasting_sums_and_products():
    rng_shapes = [((3, 1, 5), (4, 1)), ((5,), (3, 4, 5)), ((1, 6), (7, 1)), ((2, 1), (1,))]
    for s1, s2 in rng_shapes:
        a = random_signcut(s1, 3, seed=1, outliers=2)
        b = random_signcut(s2, 2, seed=2, outliers=1)
        A, B = ref(a), ref(b)
        assert_close(a + b, A + B, coef_scale(a, b))
        assert_close(a - b, A - B, coef_scale(a, b))
        assert_close(a * b, A * B, coef_scale(a, b) ** 2)
        got = np.broadcast_to(A, np.broadcast_shapes(s1, s2))
        from signcut._algebra import broadcast
        assert_close(broadcast(a, got.shape), got, coef_scale(a))
    with pytest.raises(ValueError, match="broadcast"):
        random_signcut((3, 4), 1) + random_signcut((4, 3), 1)


def test_tensorized_sums_need_one_tensorization():
    a, b, c = tensorized()
    twin = random_signcut((4, 6), 2, 7, outliers=2, tensor=((2, 2, 3, 2), (0, 2, 1, 3)))
    for got, want in ((a + twin, ref(a) + ref(twin)), (a * twin, ref(a) * ref(twin)),
                      (a - 2.5, ref(a) - 2.5), (3 * a, 3 * ref(a))):
        assert got.tensorize == a.tensorize and got.tensor_shape == a.tensor_shape
        assert_close(got, want, coef_scale(a, twin) ** 2)
    plain = random_signcut((4, 6), 2, 8)
    with pytest.raises(ValueError, match="tensorized differently"):
        a + plain
    with pytest.raises(ValueError, match="tensorized differently"):
        a * plain


# ------------------------------------------------------------------ products
def test_elementwise_product(case):
    sc, X = case
    other = random_signcut(sc.shape, 3, seed=5, outliers=4)
    Y = ref(other)
    for got, want in ((sc * other, X * Y), (other * sc, Y * X), (np.multiply(sc, other), X * Y),
                      (sc * sc, X * X), (np.square(sc), X * X), (sc ** 2, X ** 2)):
        assert_derived(got)
        assert_close(got, want, coef_scale(sc, other) ** 2)
    assert (sc * other).width == sc.width * other.width


def test_elementwise_product_signs_are_xor():
    a, b = random_signcut((70, 3), 2, 1), random_signcut((70, 3), 3, 2)
    p = a * b
    for mode in range(2):
        for i in range(2):
            for j in range(3):
                np.testing.assert_array_equal(p.signs[mode][3 * i + j],
                                              a.signs[mode][i] ^ b.signs[mode][j])
    np.testing.assert_array_equal(p.coef, np.float32(np.multiply.outer(a.coef.astype(np.float64),
                                                                       b.coef).ravel()))


def test_elementwise_product_refused_before_allocating(monkeypatch):
    from signcut import _validate
    monkeypatch.setattr(_validate, "available_memory", lambda: 1 << 20)
    a = random_signcut((100, 100), 200, 1)
    with pytest.raises(MemoryError, match="elementwise product"):
        a * a


# ------------------------------------------------------------------ indexing
def test_basic_indexing_gives_signcuts(case):
    sc, X = case
    keys = [0, -1, slice(None, None, -1), (Ellipsis, None), (None, Ellipsis, 0),
            slice(1, None, 2), (slice(None, None, -3),) * sc.ndim]
    for key in keys:
        got, want = sc[key], X[key]
        if np.ndim(want) == 0 or not np.size(want):
            assert not isinstance(got, SignCut)
        else:
            assert isinstance(got, SignCut) and got.tensorize is None
            for bits, d in zip(got.signs, got.tensor_shape):    # tail bits zero
                if d % 64 and got.width:
                    assert not (bits[:, -1] >> np.uint64(d % 64)).any()
        assert_close(got, want, coef_scale(sc))


@st.composite
def signcut_and_basic_key(draw):
    shape = draw(st.sampled_from(SHAPES))
    sc = random_signcut(shape, draw(st.sampled_from([0, 1, 6])), draw(st.integers(0, 999)),
                        outliers=draw(st.sampled_from([0, 2])))
    items = []
    for d in shape[:draw(st.integers(0, len(shape)))]:
        if draw(st.booleans()):
            items.append(draw(st.integers(-d, d - 1)))
        else:
            bound = st.none() | st.integers(-d - 2, d + 2)
            items.append(slice(draw(bound), draw(bound), draw(st.none() | st.integers(-4, 4).filter(bool))))
    for _ in range(draw(st.integers(0, 2))):
        items.insert(draw(st.integers(0, len(items))), draw(st.sampled_from([None, Ellipsis])))
    if items.count(Ellipsis) > 1:
        items.remove(Ellipsis)
    return sc, tuple(items)


@settings(max_examples=200, deadline=None)
@given(signcut_and_basic_key())
def test_basic_indexing_random(args):
    sc, key = args
    X = ref(sc)
    try:
        want = X[key]
    except IndexError:                    # (an ellipsis moved an integer to a shorter axis)
        with pytest.raises(IndexError):
            sc[key]
        return
    got = sc[key]
    if isinstance(got, SignCut):
        assert np.size(want) and np.ndim(want)
    assert_close(got, want, coef_scale(sc))


def test_integer_index_multiplies_coefficients_by_the_sign():
    sc = random_signcut((70, 5), 4, 3)
    row = sc[66]
    signs = 1 - 2 * ((sc.signs[0][:, 1] >> np.uint64(2)) & np.uint64(1)).astype(np.float32)
    np.testing.assert_array_equal(row.coef, sc.coef * signs)
    np.testing.assert_array_equal(row.signs[0], sc.signs[1])


def test_tensorized_indexing_goes_dense():
    for sc in tensorized():
        X = ref(sc)
        for key in [0, (Ellipsis, -1), slice(None, None, -2)]:
            got = sc[key]
            assert type(got) is type(sc.expand()[key])
            assert_close(got, X[key], coef_scale(sc))


# ------------------------------------------------------------------ contraction
def test_contract(case):
    sc, X = case
    rng = np.random.default_rng(4)
    for axis in range(-sc.ndim, sc.ndim):
        v = rng.standard_normal(sc.shape[axis])
        got = sc.contract(axis, v)
        want = np.tensordot(X, v, axes=([axis], [0]))
        if sc.ndim == 1:
            assert np.ndim(got) == 0 and got.dtype == np.float64
        else:
            assert_derived(got)
        assert_close(got, want, coef_scale(sc) * np.abs(v).sum())
    for v in (rng.integers(-3, 3, sc.shape[0]), rng.random(sc.shape[0]) > 0.5):
        assert_close(sc.contract(0, v), np.tensordot(X, v.astype(np.float64), axes=([0], [0])),
                     coef_scale(sc) * sc.shape[0])


def test_contract_errors():
    sc = random_signcut((3, 4), 2)
    with pytest.raises(ValueError, match="vector of 4"):
        sc.contract(1, np.ones(3))
    with pytest.raises(ValueError, match="vector"):
        sc.contract(1, np.ones((4, 1)))
    with pytest.raises(np.exceptions.AxisError):
        sc.contract(2, np.ones(3))
    with pytest.raises(TypeError):
        sc.contract(0, np.ones(3, complex))


def test_matmul_of_other_orders_with_a_vector_contracts(case):
    sc, X = case
    if sc.ndim == 2:
        return
    v, u = np.linspace(-1, 1, sc.shape[-1]), np.linspace(0, 2, sc.shape[-2] if sc.ndim > 1 else sc.shape[0])
    for got, want in ((sc @ v, X @ v), (u @ sc, u @ X)):
        assert isinstance(got, SignCut) == (np.ndim(want) > 0)
        assert_close(got, want, coef_scale(sc) * sc.shape[-1])


# ------------------------------------------------------------------ axes, shapes
def test_transpose_and_reshape(case):
    sc, X = case
    order = tuple(np.roll(range(sc.ndim), 1))
    assert_close(sc.transpose(order), X.transpose(order), coef_scale(sc))
    assert_close(sc.T, X.T, coef_scale(sc))
    if sc.ndim >= 2:
        assert_close(sc.mT, np.swapaxes(X, -1, -2), coef_scale(sc))
    for shape in [(-1,), (1,) + sc.shape, sc.shape + (1,), (sc.size, 1), tuple(reversed(sc.shape))]:
        got = sc.reshape(shape)
        assert isinstance(got, SignCut) and got.width == sc.width
        assert_close(got, X.reshape(shape), coef_scale(sc))
        assert_close(got.reshape(sc.shape), X, coef_scale(sc))
    assert sc.reshape((1,) + sc.shape).tensorize is None      # axes of size 1: still plain
    with pytest.raises(ValueError, match="cannot reshape"):
        sc.reshape(sc.size + 1)
    assert_close(sc.reshape(-1, order="F"), X.reshape(-1, order="F"), coef_scale(sc))


def test_reshape_tensorized_and_back_keeps_the_error_history():
    A = np.random.default_rng(1).standard_normal((8, 9)).astype(np.float32)
    sc = signcut.decompose(A, width=4, seed=0)
    r = sc.reshape(2, 4, 9)
    assert r.tensorize == {"shape": [2, 4, 9], "axes": [0, 1]} and r.tensor_shape == (8, 9)
    np.testing.assert_array_equal(r.errors, sc.errors)
    back = r.reshape(8, 9)
    assert back.tensorize is None
    np.testing.assert_array_equal(back.expand(), sc.expand())
    for t in tensorized():
        assert_close(t.reshape(-1), ref(t).reshape(-1), coef_scale(t))


def test_diagonal_and_trace(case):
    sc, X = case
    if sc.ndim < 2:
        with pytest.raises(ValueError):
            sc.diagonal()
        return
    for offset in (0, 1, -1, 2, -60, 80):
        for axes in ((0, 1), (1, 0), (-1, 0)):
            want = np.diagonal(X, offset, *axes)
            got = sc.diagonal(offset, *axes)
            assert isinstance(got, SignCut) == bool(want.size)
            assert_close(got, want, coef_scale(sc))
            assert_close(sc.trace(offset, *axes), np.trace(X, offset, *axes),
                         coef_scale(sc) * max(sc.shape))
    with pytest.raises(ValueError):
        sc.diagonal(0, 1, 1)


# ------------------------------------------------------------------ recompress, files
def test_recompress_brings_the_width_down():
    A = np.random.default_rng(0).standard_normal((40, 30)).astype(np.float16)
    sc = signcut.decompose(A, bits_per_entry=8, seed=0)
    big = sc + sc * 0.5                              # the same array, twice the cuts
    assert big.width == 2 * sc.width and np.isnan(big.rel_error)
    small = big.recompress(bits_per_entry=8, seed=0)
    assert small.width <= sc.width and small.orig_dtype == np.float16
    X = big.expand().astype(np.float64)
    assert small.rel_error == pytest.approx(np.linalg.norm(small.expand() - X) / np.linalg.norm(X),
                                            rel=1e-3)
    assert small.rel_error < 1.2 * sc.rel_error      # as good as the first decomposition
    by_ratio = big.recompress(ratio=0.2, seed=0)
    assert by_ratio.ratio <= 0.2 and by_ratio.orig_dtype == np.float16
    t = tensorized()[0]
    again = (t * 2).recompress(width=3, seed=1)
    assert again.tensorize == t.tensorize and again.width == 3


def test_recompress_what_does_not_fit_goes_through_products(monkeypatch):
    """A matrix whose expansion does not fit is decomposed as a LinearOperator (never
    expanded, its norm exact from the signs); another SignCut is refused before allocating."""
    from signcut import _validate
    A = np.random.default_rng(0).standard_normal((300, 200)).astype(np.float32)
    sc = signcut.decompose(A, width=120, seed=0)
    dense = sc.recompress(width=20, seed=1)
    monkeypatch.setattr(_validate, "available_memory", lambda: 100_000)
    monkeypatch.setattr(SignCut, "expand", lambda *a, **k: pytest.fail("expanded"))
    small = sc.recompress(width=20, seed=1)
    exact = float((sc - small).frobenius_norm() / sc.frobenius_norm())
    assert small.width == 20 and small.rel_error == pytest.approx(exact, rel=1e-5)
    assert small.norm == pytest.approx(sc.frobenius_norm(), rel=1e-6)
    assert small.rel_error <= 1.03 * dense.rel_error
    by_ratio = sc.recompress(ratio=small.ratio, seed=1)     # the same storage, in bits
    assert by_ratio.width == 20
    t = random_signcut((20, 30, 40), 4)
    with pytest.raises(MemoryError, match="recompressing"):
        t.recompress(width=2)


def test_derived_signcuts_save_and_load_exactly(tmp_path):
    a = random_signcut((6, 70), 3, 1, outliers=5)
    b = random_signcut((6, 70), 2, 2, outliers=4)
    for i, got in enumerate((a + b, a * b, a * 3, a[1:4, ::3], a.contract(0, np.arange(6.0)))):
        signcut.save(tmp_path / f"{i}.sct", got)
        back = signcut.load(tmp_path / f"{i}.sct")
        np.testing.assert_array_equal(back.expand(), got.expand())
        if got.outliers is not None:
            assert back.outliers.values.dtype == got.outliers.values.dtype
        assert pickle.loads(pickle.dumps(got)).expand().tobytes() == got.expand().tobytes()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SHAPES), st.floats(-1e3, 1e3, allow_nan=False, width=32),
       st.floats(-1e3, 1e3, allow_nan=False, width=32), st.integers(0, 2**16))
def test_linear_combinations_random(shape, a, b, seed):
    x = random_signcut(shape, 3, seed, outliers=2)
    y = random_signcut(shape, 2, seed + 1, outliers=1)
    X, Y = ref(x), ref(y)
    scale = (abs(a) + abs(b) + 1) * coef_scale(x, y)
    assert_close(a * x + b * y - a, a * X + b * Y - a, scale)
    assert_close((x * a) * (y + b), (X * a) * (Y + b), scale * scale)


# ------------------------------------------------------------------ advanced indexing
@st.composite
def signcut_and_advanced_key(draw):
    """Several integer arrays (broadcast together), N-d boolean arrays, boolean scalars,
    integers, slices, ``...`` and ``None`` in any order, as NumPy takes them."""
    shape = draw(st.sampled_from(SHAPES))
    sc = random_signcut(shape, draw(st.sampled_from([0, 1, 6])), draw(st.integers(0, 999)),
                        outliers=draw(st.sampled_from([0, 3])))
    group = draw(st.sampled_from([(), (2,), (3,), (2, 1), (1, 3), (2, 3)]))
    items, axis = [], 0
    used_bool = False
    while axis < len(shape) and draw(st.integers(0, 4)):
        d = shape[axis]
        kind = draw(st.sampled_from(["int", "slice", "array", "array", "bool", "none",
                                     "boolscalar", "ellipsis"]))
        if kind == "int":
            items.append(draw(st.integers(-d, d - 1)))
        elif kind == "slice":
            items.append(slice(draw(st.none() | st.integers(-d, d)), None,
                               draw(st.sampled_from([None, 2, -1]))))
        elif kind == "array":
            items.append(np.array(draw(st.lists(st.integers(-d, d - 1), min_size=int(np.prod(group)),
                                                max_size=int(np.prod(group))))).reshape(group))
        elif kind == "bool" and not used_bool:
            used_bool = True
            n = draw(st.integers(1, min(2, len(shape) - axis)))
            dims = shape[axis:axis + n]
            items.append(np.array(draw(st.lists(st.booleans(), min_size=int(np.prod(dims)),
                                                max_size=int(np.prod(dims))))).reshape(dims))
            axis += n - 1
        elif kind == "none":
            items.append(None)
            axis -= 1
        elif kind == "boolscalar":
            items.append(draw(st.booleans()))
            axis -= 1
        elif kind == "ellipsis" and not any(i is Ellipsis for i in items):
            items.append(Ellipsis)
            axis = len(shape) - (len(shape) - axis) // 2 - 1
        else:
            items.append(slice(None))
        axis += 1
    return sc, tuple(items)


@settings(max_examples=400, deadline=None)
@given(signcut_and_advanced_key())
def test_advanced_indexing_random(args):
    sc, key = args
    X = ref(sc)
    try:
        want = X[key]
    except IndexError:
        with pytest.raises(IndexError):
            sc[key]
        return
    got = sc[key]
    assert_close(got, want, coef_scale(sc))


@st.composite
def random_shape_signcuts(draw):
    """Two SignCuts of one hypothesis-drawn shape (orders 1 to 4, dims 1 to 70)."""
    shape = tuple(draw(st.lists(st.integers(1, 70), min_size=1, max_size=4)))
    if np.prod(shape) > 20_000:
        shape = shape[:2]
    seed = draw(st.integers(0, 2**16))
    x = random_signcut(shape, draw(st.integers(0, 5)), seed, outliers=draw(st.integers(0, 3)))
    y = random_signcut(shape, draw(st.integers(0, 4)), seed + 1, outliers=draw(st.integers(0, 3)))
    return x, y


@settings(max_examples=80, deadline=None)
@given(random_shape_signcuts(), st.floats(-50, 50, allow_nan=False), st.data())
def test_operations_on_drawn_shapes(pair, a, data):
    x, y = pair
    X, Y = ref(x), ref(y)
    scale = (1 + abs(a)) * coef_scale(x, y)
    assert_close(a * x - y, a * X - Y, scale)
    assert_close(x * y + a, X * Y + a, scale * scale)
    axis = data.draw(st.integers(0, x.ndim - 1))
    v = np.linspace(-1, 1, x.shape[axis])
    assert_close(x.contract(axis, v), np.tensordot(X, v, axes=([axis], [0])),
                 scale * x.shape[axis])
    key = tuple(data.draw(st.sampled_from([slice(None, None, -2), 0, -1, slice(1, None)]))
                for _ in range(x.ndim))
    assert_close(x[key], X[key], scale)
    assert x.vdot(y) == pytest.approx(float((X * Y).sum()), rel=1e-5, abs=1e-5 * scale * X.size)
    assert x.frobenius_norm() == pytest.approx(float(np.linalg.norm(X)), rel=1e-5, abs=1e-6)
