"""signcut.decompose on tensors of order 1 and >= 3 (the tensor engine)."""
import numpy as np
import pytest

import signcut
from reference import greedy_tensor


def gaussian(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


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
