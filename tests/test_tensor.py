"""signcut.decompose on tensors of order 1 and >= 3 (the tensor engine)."""
import numpy as np
import pytest

import signcut
from conftest import gaussian, on_every_kernel_set
from reference import greedy_tensor


def expansion_error(X, r):
    X = np.asarray(X, np.float64)
    return np.linalg.norm(X - r.expand().astype(np.float64)) / np.linalg.norm(X)


# Tiny tensors vary a lot from start to start: average over more seeds there.
@pytest.mark.parametrize("shape,width,seeds", [((3, 5, 7), 20, 40), ((17, 1, 9), 10, 40),
                                               ((2, 2, 2, 2, 2), 12, 60), ((4, 6, 8, 10), 40, 8),
                                               ((50,), 3, 3), ((9, 70, 66), 30, 4)])
def test_quality_matches_einsum_reference(shape, width, seeds):
    X = gaussian(shape, seed=1)
    ref = np.mean([greedy_tensor(X, width, seed=s)[-1] for s in range(seeds)])
    got = np.mean([signcut.decompose(X, width=width, seed=s).rel_error for s in range(seeds)])
    assert abs(got / ref - 1) <= 0.03, (got, ref)


@pytest.mark.parametrize("shape", [(6, 10, 14), (4, 4, 4, 6), (130, 3, 2)])
def test_exact_recovery_of_two_rank_one_sign_tensors(shape):
    rng = np.random.default_rng(2)
    first = [rng.choice([-1.0, 1.0], d) for d in shape]
    second = [rng.choice([-1.0, 1.0], d) for d in shape]
    second[0] = first[0].copy()
    second[0][rng.permutation(shape[0])[: shape[0] // 2]] *= -1   # orthogonal first modes
    def outer(vs):
        out = vs[0]
        for v in vs[1:]:
            out = np.multiply.outer(out, v)
        return out
    X = (8.0 * outer(first) + 1.0 * outer(second)).astype(np.float32)
    r = signcut.decompose(X, width=2, seed=0)
    assert r.rel_error < 1e-6 and expansion_error(X, r) < 1e-6
    np.testing.assert_allclose(sorted(r.coef), [1.0, 8.0], rtol=1e-6)


@pytest.mark.parametrize("shape", [(1,), (1, 1, 1), (5, 1, 3), (65, 3, 64), (2, 3, 4, 5, 6, 2, 3, 2)])
def test_error_history_and_expansion(shape):
    X = gaussian(shape, seed=3)
    r = signcut.decompose(X, width=70, seed=4)
    assert r.width >= 1 and r.shape == shape
    assert np.all(np.diff(r.errors) <= 1e-4)
    assert r.rel_error == pytest.approx(expansion_error(X, r), abs=1e-4)
    assert r.bits_per_entry == pytest.approx(r.width * (sum(shape) + 32) / np.prod(shape))


def test_order_one_is_one_cut_per_level():
    x = np.array([3.0, -1.0, 2.0, -2.0])
    r = signcut.decompose(x, width=1, seed=0)
    np.testing.assert_array_equal(r.expand(), np.full(4, 2.0, np.float32) * np.sign(x))


def test_threads_do_not_change_bits():
    X = gaussian((20, 33, 70), seed=5)
    a, b, c = (signcut.decompose(X, width=25, seed=9, n_threads=nt) for nt in (1, 2, 3))
    for r in (b, c):
        for s, t in zip(r.signs, a.signs):
            np.testing.assert_array_equal(s, t)
        np.testing.assert_array_equal(r.coef, a.coef)


def test_budgets_and_callback_on_tensors():
    X = gaussian((10, 12, 14), seed=6)
    r = signcut.decompose(X, bits_per_entry=2, seed=0)
    assert r.width == int(2 * X.size // (36 + 32)) and r.bits_per_entry <= 2
    r = signcut.decompose(X, rtol=0.8, seed=0)
    assert r.rel_error <= 0.8 and r.stopped_by == "rtol"
    seen = []
    signcut.decompose(X, width=5, seed=0, callback=lambda k, e: seen.append(k))
    assert seen == [1, 2, 3, 4, 5]
    assert signcut.decompose(np.zeros((3, 4, 5)), width=3).width == 0


def test_tensor_result_behaves_like_an_array():
    X = gaussian((6, 7, 8), seed=7)
    r = signcut.decompose(X, width=30, seed=0)
    dense = r.expand()
    np.testing.assert_allclose(r[1:4, ::-2, 3], dense[1:4, ::-2, 3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r.sum(axis=1), dense.sum(axis=1), rtol=1e-4, atol=1e-4)


def test_tensorize_round_trip():
    img = np.random.default_rng(8).standard_normal((16, 24, 3)).astype(np.float32)
    r = signcut.decompose(img, width=40, seed=0, shape=(2, 8, 3, 8, 3), axes=(0, 2, 1, 3, 4))
    assert r.shape == img.shape and r.tensor_shape == (2, 3, 8, 8, 3)
    assert r.bits_per_entry == pytest.approx(40 * (2 + 3 + 8 + 8 + 3 + 32) / img.size)
    dense = r.expand()
    assert dense.shape == img.shape
    assert r.rel_error == pytest.approx(expansion_error(img, r), abs=1e-4)
    # the decomposition is the one of the permuted tensor
    plain = signcut.decompose(img.reshape(2, 8, 3, 8, 3).transpose(0, 2, 1, 3, 4), width=40, seed=0)
    np.testing.assert_array_equal(plain.coef, r.coef)
    np.testing.assert_allclose(r[3, 5:9], dense[3, 5:9])
    assert r.truncate(10).shape == img.shape
    full = signcut.decompose(img, width=50, seed=0, shape=(16, 72))
    assert full.tensor_shape == (16, 72) and full.expand().shape == img.shape


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"shape": (5, 5)}, ValueError, "sizes must match"),
    ({"shape": (4, 0, 9)}, ValueError, "positive"),
    ({"shape": (4, 9), "axes": (0, 0)}, ValueError, "permutation"),
    ({"shape": "ab"}, TypeError, "shape"),
])
def test_bad_tensorize(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        signcut.decompose(gaussian((6, 6)), width=2, **kwargs)


# The incremental engine: flushes of pending cuts, block sizes, orders 3..8, threads.

from signcut import _core  # noqa: E402

ODD_SHAPES = [(3, 5, 7), (5, 3, 1, 7), (3, 2, 5, 3, 2), (2, 3, 1, 5, 3, 2),
              (3, 2, 3, 2, 3, 2, 1), (2, 3, 2, 1, 3, 2, 3, 2)]


def engine(X, width, block_size=64, n_threads=1, seed=0):
    """The C engine on a float32 copy of X: (bits per mode, coef, errors, norm, stopped_by)."""
    R = np.array(X, np.float32, copy=True)
    state = np.random.SeedSequence(seed).generate_state(4, np.uint64)
    return _core.decompose(R, width, 0.0, 0.0, block_size, 1000, n_threads, state)


def expand_bits(bits, coef, shape):
    """Dense float64 sum_j coef_j * s1_j x ... x sk_j from packed bits (NumPy reference)."""
    out = np.zeros(shape)
    for j, c in enumerate(coef):
        term = np.array(c, np.float64)
        for b, d in zip(bits, shape):
            flags = np.unpackbits(b[j].astype("<u8").view(np.uint8), bitorder="little")[:d]
            term = np.multiply.outer(term, 1.0 - 2.0 * flags)
        out += term
    return out


# (2, 3, 4500): more columns than one flush chunk (FLUSH_COLS in tensor.c).
@pytest.mark.parametrize("shape,block_size", [((20, 33, 70), 64), ((9, 8, 7, 6), 5),
                                              ((3, 5, 7), 1), ((130, 3, 2), 17),
                                              ((2, 3, 4500), 9)])
def test_flushes_keep_errors_exact(shape, block_size):
    """Several flushes (width > block_size): the error after each flush and the last one are
    the exact errors of the cuts so far, and the history never grows."""
    X = gaussian(shape, seed=10)
    width = 3 * block_size + 5 if block_size > 1 else 40
    bits, coef, errors, norm, _ = engine(X, width, block_size)
    assert len(coef) == width
    assert norm == pytest.approx(np.linalg.norm(X.astype(np.float64)), rel=1e-6)
    assert np.all(np.diff(errors) <= 1e-6)
    nX = np.linalg.norm(X.astype(np.float64))
    for w in list(range(block_size, width, block_size)) + [width]:
        approx = expand_bits([b[:w] for b in bits], coef[:w], shape)
        assert errors[w - 1] == pytest.approx(np.linalg.norm(X - approx) / nX, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("shape", [(20, 33, 70), (3, 5, 7, 9), (7, 3, 11, 5, 2), (64, 65, 3)])
def test_block_sizes_agree_within_rounding(shape):
    """Pending cuts only change rounding: block_size 1, 7 and 64 pick the same cuts (up to a
    rare near tie late in the run) with the same coefficients to float32 rounding."""
    X = gaussian(shape, seed=11)
    runs = [engine(X, 150, bs) for bs in (1, 7, 64)]
    ref_bits, ref_coef, ref_err = runs[0][:3]
    for bits, coef, errors, _, _ in runs[1:]:
        same = [all(np.array_equal(b[j], r[j]) for b, r in zip(bits, ref_bits)) for j in range(150)]
        first = same.index(False) if False in same else 150
        assert first >= 100, first
        np.testing.assert_allclose(coef[:first], ref_coef[:first], rtol=1e-5)
        assert errors[-1] == pytest.approx(ref_err[-1], rel=1e-3)


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_orders_3_to_8_match_einsum_reference(shape):
    X = gaussian(shape, seed=12)
    width = max(4, X.size // 20)
    ref = np.mean([greedy_tensor(X, width, seed=s)[-1] for s in range(30)])
    runs = [signcut.decompose(X, width=width, seed=s) for s in range(30)]
    got = np.mean([r.rel_error for r in runs])
    assert abs(got / ref - 1) <= 0.03, (got, ref)
    r = runs[0]
    assert r.rel_error == pytest.approx(expansion_error(X, r), abs=1e-5)


@pytest.mark.parametrize("shape", [(20, 33, 70), (7, 3, 11, 5, 2), (3, 2, 5, 3, 2, 4, 3, 5),
                                   (130, 3, 2), (2, 300, 2), (2, 3, 4500)])
def test_threads_bit_identical_across_flushes(shape):
    X = gaussian(shape, seed=13)
    runs = [engine(X, 150, 16, n_threads=nt) for nt in (1, 2, 3)]
    for bits, coef, errors, _, _ in runs[1:]:
        for b, r in zip(bits, runs[0][0]):
            np.testing.assert_array_equal(b, r)
        np.testing.assert_array_equal(coef, runs[0][1])
        np.testing.assert_array_equal(errors, runs[0][2])


def test_engine_rejects_bad_block_size():
    for bs in (0, 65):
        with pytest.raises(ValueError, match="invalid argument"):
            engine(gaussian((3, 4, 5)), 3, bs)


def test_every_kernel_set_decomposes_tensors_alike():
    X = gaussian((12, 17, 9, 5), seed=14)
    results = on_every_kernel_set(lambda: signcut.decompose(X, width=100, seed=2))
    for r in results[1:]:
        assert r.rel_error == pytest.approx(results[0].rel_error, rel=0.01)


def test_block_size_reaches_the_tensor_engine():
    """decompose(block_size=1) subtracts every cut at once: each reported error is exact and
    the history never grows; the default block gives the same cuts up to rounding."""
    X = gaussian((5, 6, 7), seed=15)
    r = signcut.decompose(X, width=40, seed=0, block_size=1)
    assert np.all(np.diff(r.errors) <= 1e-12)
    for w in (1, 7, 23, 40):
        assert r.errors[w - 1] == pytest.approx(expansion_error(X, r.truncate(w)), rel=1e-5)
    d = signcut.decompose(X, width=40, seed=0)
    np.testing.assert_allclose(d.coef, r.coef, rtol=1e-5)
    # the same bits as the engine itself with block_size 1, not 64 (X is scaled by 2**e)
    e = np.frexp(np.abs(X).max())[1]
    one, block = (engine(np.ldexp(X, -e), 40, bs)[1] for bs in (1, 64))
    np.testing.assert_array_equal(r.coef, np.ldexp(one, e))
    assert not np.array_equal(r.coef, np.ldexp(block, e))
    with pytest.raises(ValueError, match="block_size"):
        signcut.decompose(X, width=3, block_size=65)


@pytest.mark.parametrize("order", [9, 26, 32])
def test_high_orders_expand_and_index(order):
    """Orders past einsum's letters: a 2 x 2 x 1 x ... tensor of `order` modes."""
    shape = (2, 2) + (1,) * (order - 2)
    X = np.random.default_rng(order).standard_normal(shape).astype(np.float32)
    r = signcut.decompose(X, width=6, seed=0)
    dense = r.expand()
    assert dense.shape == shape
    assert r.rel_error == pytest.approx(np.linalg.norm(X - dense) / np.linalg.norm(X), abs=1e-5)
    np.testing.assert_allclose(r[(1,) * 2 + (0,) * (order - 2)], dense[(1,) * 2 + (0,) * (order - 2)],
                               rtol=1e-6)


@pytest.mark.parametrize("shape", [(7,), (1,), (30, 40), (5, 6, 7), (3, 4, 1, 6), (2,) * 9,
                                   (65, 3, 129)])
def test_expansion_in_c_matches_float64(shape):
    """expand() of any order goes through the C engine (the unfolding nearest a square):
    within float32 rounding of a float64 einsum, and the same bits on 1 and 2 threads."""
    from reference import unpack
    rng = np.random.default_rng(len(shape))
    r = signcut.decompose(rng.standard_normal(shape), width=70, seed=0)
    k = len(shape)
    factors = [unpack(b, d) for b, d in zip(r.signs, r.tensor_shape)]
    factors[0] = factors[0] * r.coef.astype(np.float64)[:, None]
    ref = np.einsum(*[x for a, f in enumerate(factors) for x in (f, [k, a])], list(range(k)))
    out = r.expand(n_threads=1)
    assert np.abs(out - ref).max() <= 1e-6 * np.abs(r.coef).sum()
    np.testing.assert_array_equal(out, r.expand(n_threads=2))


@pytest.mark.parametrize("shape", [(40,), (30, 20), (6, 7, 8)])
def test_engine_reports_against_a_reference_norm(shape):
    """One entry for every order: with ref_norm2 the errors, rtol and the callback are relative
    to that norm and count from first_cut, the cuts themselves unchanged."""
    X = np.random.default_rng(5).standard_normal(shape)
    state = np.random.SeedSequence(3).generate_state(4, np.uint64)
    plain = _core.decompose(np.array(X, np.float32), 6, 0.0, 0.0, 64, 1000, 1, state,
                            first_cut=4)
    seen = []
    ref2 = 4.0 * plain[3] ** 2
    scaled = _core.decompose(np.array(X, np.float32), 6, 0.0, 0.0, 64, 1000, 1, state,
                             callback=lambda k, e: seen.append((k, e)), first_cut=4,
                             ref_norm2=ref2)
    for a, b in zip(plain[0], scaled[0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(plain[1], scaled[1])
    np.testing.assert_allclose(scaled[2], plain[2] / 2, rtol=1e-12)
    assert [k for k, _ in seen] == list(range(5, 11))
    # (the last error is made exact after the callback saw the tracked one)
    np.testing.assert_allclose([e for _, e in seen], scaled[2], rtol=1e-3)
    # an rtol the input already meets against the reference: no cut at all
    none = _core.decompose(np.array(X, np.float32), 6, 0.5, 0.0, 64, 1000, 1, state,
                           ref_norm2=ref2)
    assert len(none[1]) == 0 and none[4] == "rtol"
    with pytest.raises(ValueError, match="ref_norm2"):
        _core.decompose(np.array(X, np.float32), 6, 0.0, 0.0, 64, 1000, 1, state,
                        ref_norm2=-1.0)
