"""Products with an order-2 decomposition through lookup tables (src/matmul.c): the kernels
against NumPy references for every instruction set the host supports, the C product against
the dense product ``expand() @ x``, and SignCut @ x / x @ SignCut on odd shapes and inputs."""
import numpy as np
import pytest

from signcut import SignCut, _core
from signcut._array import matmul, rmatmul, sign_lanes
from reference import pack, random_signs, unpack

SIDES = [1, 63, 64, 65, 127, 1000]


def signcut_of(rng, m, n, width):
    signs = [pack(random_signs(rng, width, m)), pack(random_signs(rng, width, n))]
    return SignCut((m, n), signs, rng.standard_normal(width).astype(np.float32))


def dense(sc):
    """The expanded matrix in float64."""
    return sc.expand().astype(np.float64)


def assert_product(got, want, dtype=np.float32):
    """Equal up to float32 rounding: each entry within 2e-5 of the rms of the answer (a single
    wrong sign bit moves an entry by far more); ``dtype`` the promoted one of the operand."""
    assert got.shape == want.shape and got.dtype == dtype
    scale = float(np.sqrt(np.mean(np.square(want)))) if want.size else 0.0
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=2e-5 * scale + 1e-30)


@pytest.fixture
def with_kernels(isa):
    """Select the kernel table `isa` for SignCut products, restoring the previous one after."""
    prev = _core.use_kernels(isa)
    yield isa
    _core.use_kernels(prev)


# ------------------------------------------------------------------ layouts
@pytest.mark.parametrize("rows", [0, 1, 7, 64, 65, 130])
@pytest.mark.parametrize("length", [1, 63, 64, 65, 200])
def test_bits_transpose(rng, rows, length):
    signs = random_signs(rng, rows, length)
    got = _core.bits_transpose(pack(signs), length)
    np.testing.assert_array_equal(got, pack(signs.T) if rows else np.zeros((length, 0), np.uint64))


@pytest.mark.parametrize("rows", [0, 1, 8, 9, 20])
@pytest.mark.parametrize("length", [1, 31, 32, 33, 64, 100])
def test_sign_lanes(rng, rows, length):
    signs = random_signs(rng, rows, length)
    lanes = sign_lanes(pack(signs), length)
    words = (length + 31) // 32
    assert lanes.shape == ((rows + 7) // 8, words, 8) and lanes.dtype == np.uint32
    for r in range(8 * lanes.shape[0]):
        row = lanes[r // 8, :, r % 8]
        bits = np.unpackbits(row.astype("<u4").view(np.uint8), bitorder="little")
        want = (signs[r] < 0) if r < rows else np.zeros(length, bool)
        np.testing.assert_array_equal(bits[:length].astype(bool), want)
        assert not bits[length:].any()


# ------------------------------------------------------------------ kernels
@pytest.mark.parametrize("rows", [8, 16, 40, 64, 264])
@pytest.mark.parametrize("length", [1, 31, 32, 33, 63, 64, 65, 127, 1000])
def test_lut3_rows(isa, rng, rows, length):
    signs = random_signs(rng, rows, length)
    lanes = sign_lanes(pack(signs), length)
    x = rng.standard_normal(length).astype(np.float32)
    out0 = rng.standard_normal(rows).astype(np.float32)
    out = out0.copy()
    _core.kernel_lut3_rows(isa, out, lanes, x)
    want = out0 + signs @ x.astype(np.float64)
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-6 * (np.abs(x).sum() + 1))
    ref = out0.copy()
    _core.kernel_lut3_rows("scalar", ref, lanes, x)
    np.testing.assert_array_equal(out, ref)     # the same additions in the same order


@pytest.mark.parametrize("rows", [8, 24, 64])
@pytest.mark.parametrize("words", [1, 3])
@pytest.mark.parametrize("pb", [8, 16, 24, 32, 48, 64, 80])
def test_lut_rows(isa, rng, rows, words, pb):
    bits = rng.integers(0, 2**32, size=(rows, words), dtype=np.uint32)
    lanes = np.ascontiguousarray(bits.reshape(rows // 8, 8, words).transpose(0, 2, 1))
    tab = rng.standard_normal((128 * words, pb)).astype(np.float32)
    out0 = rng.standard_normal((rows, pb)).astype(np.float32)
    out = out0.copy()
    _core.kernel_lut_rows(isa, out, lanes, tab)
    groups = (bits[:, :, None] >> (4 * np.arange(8, dtype=np.uint32))) & 15   # (rows, words, 8)
    idx = 16 * np.arange(8 * words) + groups.reshape(rows, 8 * words).astype(np.int64)
    want = out0 + tab.astype(np.float64)[idx].sum(axis=1)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5 * np.sqrt(8 * words))
    ref = out0.copy()
    _core.kernel_lut_rows("scalar", ref, lanes, tab)
    np.testing.assert_array_equal(out, ref)


def test_kernel_shape_checks():
    lanes = np.zeros((1, 1, 8), np.uint32)
    with pytest.raises(ValueError):
        _core.kernel_lut3_rows("scalar", np.zeros(9, np.float32), lanes, np.zeros(32, np.float32))
    with pytest.raises(ValueError):
        _core.kernel_lut3_rows("scalar", np.zeros(8, np.float32), lanes, np.zeros(33, np.float32))
    with pytest.raises(ValueError):
        _core.kernel_lut_rows("scalar", np.zeros((8, 4), np.float32), lanes, np.zeros((128, 4), np.float32))


# ------------------------------------------------------------------ the C product
@pytest.mark.parametrize("m,n,width", [(1, 1, 1), (63, 65, 7), (64, 64, 64), (65, 127, 65),
                                       (127, 1, 200), (1000, 63, 33), (1, 1000, 130)])
@pytest.mark.parametrize("p", [1, 2, 8, 33])
def test_matrix_matmul(isa, rng, m, n, width, p):
    sc = signcut_of(rng, m, n, width)
    x = rng.standard_normal((n, p)).astype(np.float32)
    y = np.full((m, p), np.nan, np.float32)
    lanes, lanes_t = sign_lanes(sc.signs[1], n), sign_lanes(_core.bits_transpose(sc.signs[0], m), width)
    _core.matrix_matmul(y, x, lanes, lanes_t, sc.coef, 2, isa)
    assert_product(y, dense(sc) @ x.astype(np.float64))


@pytest.mark.parametrize("m", SIDES)
@pytest.mark.parametrize("n", SIDES)
def test_matmul_sides(with_kernels, rng, m, n):
    width = int(rng.integers(1, 201))
    sc = signcut_of(rng, m, n, width)
    A = dense(sc)
    x, y = rng.standard_normal(n), rng.standard_normal(m)
    assert_product(sc @ x.astype(np.float32), A @ x.astype(np.float32))
    assert_product(y.astype(np.float32) @ sc, y.astype(np.float32) @ A)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    assert_product(sc @ X, A @ X)


@pytest.mark.parametrize("p", [1, 2, 7, 8, 9, 31, 32, 33, 64, 70])
def test_matmul_columns(with_kernels, rng, p):
    sc = signcut_of(rng, 130, 97, 150)
    A = dense(sc)
    X = rng.standard_normal((97, p)).astype(np.float32)
    assert_product(sc @ X, A @ X)
    Y = rng.standard_normal((p, 130)).astype(np.float32)
    assert_product(Y @ sc, Y @ A)


def test_matmul_inputs(rng):
    sc = signcut_of(rng, 70, 90, 40)
    A = dense(sc)
    X = rng.standard_normal((180, 12))
    views = [X[::2, 0], X[:90, ::3], np.asfortranarray(X[:90]), X[:90].astype(np.float32).T.copy().T,
             X[:90].astype(np.int64), X[:90] > 0]
    for v in views:                                   # float64, strided, Fortran, int, bool
        assert_product(sc @ v, A @ v.astype(np.float32).astype(np.float64),
                       np.result_type(v.dtype, np.float32))
    Y = rng.standard_normal((4, 140))
    for v in [Y[:, ::2], Y[:, :70].T.copy().T, Y[0, ::2]]:
        assert_product(v @ sc, v.astype(np.float32).astype(np.float64) @ A, np.float64)
    B = rng.standard_normal((3, 90, 4))               # stacked matrices
    assert_product(sc @ B, A @ B.astype(np.float32).astype(np.float64), np.float64)
    C = rng.standard_normal((2, 5, 70))
    assert_product(C @ sc, C.astype(np.float32).astype(np.float64) @ A, np.float64)


def test_float64_input_is_rounded_to_float32(rng):
    sc = signcut_of(rng, 50, 60, 30)
    x = rng.standard_normal(60)
    np.testing.assert_array_equal(sc @ x, sc @ x.astype(np.float32))


def test_empty_and_zero_width(rng):
    sc = signcut_of(rng, 5, 6, 0)
    np.testing.assert_array_equal(sc @ np.ones(6), np.zeros(5, np.float32))
    np.testing.assert_array_equal(np.ones((2, 5)) @ sc, np.zeros((2, 6), np.float32))
    sc = signcut_of(rng, 5, 6, 3)
    assert (sc @ np.ones((6, 0))).shape == (5, 0)
    assert (np.ones((0, 5)) @ sc).shape == (0, 6)


@pytest.mark.parametrize("p", [1, 20])
def test_threads_do_not_change_bits(rng, p):
    sc = signcut_of(rng, 1000, 1000, 300)
    x = rng.standard_normal((1000, p)).astype(np.float32)
    one = matmul(sc, x, n_threads=1)
    for nt in (2, 3, 4):
        np.testing.assert_array_equal(matmul(sc, x, n_threads=nt), one)
        np.testing.assert_array_equal(rmatmul(sc, x.T, n_threads=nt), rmatmul(sc, x.T, n_threads=1))


def test_kernels_agree(rng):
    """Every instruction set adds the same lookups in the same order: identical answers."""
    sc = signcut_of(rng, 200, 300, 100)
    lanes, lanes_t = sign_lanes(sc.signs[1], 300), sign_lanes(_core.bits_transpose(sc.signs[0], 200), 100)
    for p in (1, 16, 40):
        x = rng.standard_normal((300, p)).astype(np.float32)
        outs = []
        for isa in _core.supported_kernels():
            y = np.empty((200, p), np.float32)
            outs.append(_core.matrix_matmul(y, x, lanes, lanes_t, sc.coef, 1, isa))
        for y in outs[1:]:
            np.testing.assert_array_equal(y, outs[0])


def test_matches_unpacked_reference(rng):
    # Independent of expand(): the product from the unpacked +-1 factors.
    m, n, width = 77, 150, 90
    sc = signcut_of(rng, m, n, width)
    S, T = unpack(sc.signs[0], m).astype(np.float64), unpack(sc.signs[1], n).astype(np.float64)
    x = rng.standard_normal(n).astype(np.float32)
    assert_product(sc @ x, S.T @ (sc.coef * (T @ x)))


def test_cached_layouts(rng):
    import copy
    import pickle
    sc = signcut_of(rng, 40, 50, 20)
    x = rng.standard_normal(50).astype(np.float32)
    first = sc @ x
    assert "right" in sc._product_lanes and "left" not in sc._product_lanes
    np.testing.assert_array_equal(sc @ x, first)                  # from the cache
    clone = pickle.loads(pickle.dumps(sc))
    assert "_product_lanes" not in clone.__dict__
    np.testing.assert_array_equal(clone @ x, first)
    np.testing.assert_array_equal(copy.deepcopy(sc) @ x, first)
    assert "_product_lanes" not in sc.truncate(10).__dict__      # a new result, its own cache
    assert_product(sc.truncate(10) @ x, dense(sc.truncate(10)) @ x)


# ------------------------------------------------------------------ thread choice under load
def simulate(choice, times, calls):
    """Thread counts a ThreadChoice picks over ``calls`` products timed by ``times(k, nt)``."""
    picked = []
    for k in range(calls):
        nt = choice.pick()
        picked.append(nt)
        choice.record(nt, times(k, nt))
    return picked


def test_thread_choice_measures_then_keeps_the_faster():
    from signcut._array import ThreadChoice
    w = ThreadChoice.WINDOW
    # quiet cores: all threads faster; the single thread is measured again now and then,
    # less and less often while it keeps losing
    picked = simulate(ThreadChoice(4), lambda k, nt: 1.0 if nt == 4 else 1.5, 1000)
    assert picked[:2 * w] == [4] * w + [1] * w
    starts = [k for k in range(2 * w, 1000) if picked[k] == 1 and picked[k - 1] == 4]
    assert np.diff(starts).tolist() == [ThreadChoice.EVERY * 2 ** i + w for i in range(1, len(starts))]
    # one unlucky call changes nothing
    spike = lambda k, nt: (50.0 if k == 300 else 1.0) if nt == 4 else 1.5
    assert simulate(ThreadChoice(4), spike, 400)[301:320] == [4] * 19
    # a busy process arrives at call 100: all threads get 8x slower, one thread barely; it
    # leaves at call 200: back to all threads at the next measurement
    busy = lambda k, nt: (8.0 if nt == 4 else 1.6) if 100 <= k < 200 else (1.0 if nt == 4 else 1.5)
    picked = simulate(ThreadChoice(4), busy, 600)
    assert picked[100:100 + w] == [4] * w                # the window fills with slow calls ...
    assert picked[100 + w:100 + w + ThreadChoice.EVERY] == [1] * ThreadChoice.EVERY   # switch
    assert picked[100:200].count(4) <= 2 * w            # and one measurement of all threads
    assert picked[-200:].count(4) >= 200 - 2 * w
    # one thread only when clearly faster (MARGIN)
    assert simulate(ThreadChoice(2), lambda k, nt: 1.0 if nt == 2 else 0.9, 50)[-1] == 2
    assert simulate(ThreadChoice(1), lambda k, nt: 1.0, 5) == [1] * 5


def test_products_pick_their_threads_per_side_and_columns(rng):
    sc = signcut_of(rng, 300, 200, 50)
    x, y, X = rng.standard_normal(200), rng.standard_normal(300), rng.standard_normal((200, 9))
    want = [sc @ x, y @ sc, sc @ X]
    for _ in range(5):                                   # whatever count is picked: same bits
        for got, w in zip([sc @ x, y @ sc, sc @ X], want):
            np.testing.assert_array_equal(got, w)
    choices = sc.__dict__["_product_threads"]
    assert set(choices) == {("right", 1), ("left", 1), ("right", "blocks of 64", 1)}
    assert all(c.calls == 6 for c in choices.values())
    import pickle
    assert "_product_threads" not in pickle.loads(pickle.dumps(sc)).__dict__
