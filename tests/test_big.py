"""Sizes above 2**31 entries: shapes, indexing, sums, products and files stay exact; a
decomposition too large for memory is refused before allocating."""
import os
import tracemalloc

import numpy as np
import pytest

import signcut
from signcut import SignCut
from signcut._result import words


# A (70000, 40000) SignCut holds 2.8e9 entries (more than 2**31, and than 2**32 / 2 as bits):
# built from a few random cuts and never expanded, it must index, sum, multiply, save, load and
# report its sizes right. References: exact integer arithmetic on the unpacked signs of the
# few rows and columns involved, or float64 products with the unpacked sign vectors.
BIG = (70_000, 40_000)


def _random_cuts(shape, width, seed):
    rng = np.random.default_rng(seed)
    signs = []
    for d in shape:
        bits = rng.integers(0, 2**64, size=(width, words(d)), dtype=np.uint64)
        if d % 64:
            bits[:, -1] &= np.uint64((1 << (d % 64)) - 1)
        signs.append(bits)
    coef = rng.integers(1, 9, width).astype(np.float32)    # small integers: exact float sums
    return SignCut(shape, signs, coef, rng.random(width), norm=1.0)


def _signs(bits, d):
    """(width, d) int64 array of +1/-1 from packed bits."""
    flags = np.unpackbits(bits.view(np.uint8).reshape(len(bits), -1), axis=1, count=d,
                          bitorder="little")
    return 1 - 2 * flags.astype(np.int64)


@pytest.fixture(scope="module")
def big():
    r = _random_cuts(BIG, 3, seed=31)
    S, T = (_signs(b, d) for b, d in zip(r.signs, BIG))       # 3 x 110,000 int64: small
    return r, S, T, r.coef.astype(np.int64)


def test_big_sizes_are_exact(big):
    r, *_ = big
    m, n = BIG
    assert r.size == m * n == 2_800_000_000 > 2**31 and r.shape == BIG and len(r) == m
    assert r.nbytes == -(-3 * (m + n) // 8) + 4 * 3
    assert r.bits_per_entry == 3 * (m + n + 32) / (m * n)
    assert r.ratio == r.nbytes / (4 * m * n)
    assert "70000, 40000" in repr(r)


def test_big_indexing(big):
    r, S, T, c = big
    m, n = BIG
    for i, j in [(0, 0), (m - 1, n - 1), (54_321, 39_999), (2**16 + 3, 2**15 + 7), (-1, -2)]:
        want = int((c * S[:, i] * T[:, j]).sum())
        assert r[i, j] == want, (i, j)
    np.testing.assert_array_equal(r[m - 2], (c[:, None] * S[:, m - 2, None] * T).sum(0))
    np.testing.assert_array_equal(r[:, n - 1], (c[:, None] * T[:, n - 1, None] * S).sum(0))
    block = r[65_000:65_007, 39_990:]
    want = np.einsum("k,ki,kj->ij", c, S[:, 65_000:65_007], T[:, 39_990:])
    np.testing.assert_array_equal(block, want)
    np.testing.assert_array_equal(r[[3, m - 3, 60_001], 12], (c * S[:, [3, m - 3, 60_001]].T
                                                             * T[:, 12]).sum(1))


def test_big_sums(big):
    r, S, T, c = big
    total = int((c * S.sum(1) * T.sum(1)).sum())               # exact integers
    assert float(r.sum()) == pytest.approx(total, rel=1e-6, abs=1e-3)
    np.testing.assert_allclose(r.sum(axis=0), (c * S.sum(1)) @ T, rtol=1e-6)
    np.testing.assert_allclose(r.sum(axis=1), (c * T.sum(1)) @ S, rtol=1e-6)
    assert float(r.mean()) == pytest.approx(total / (BIG[0] * BIG[1]), rel=1e-5, abs=1e-12)


def test_big_matmul(big):
    r, S, T, c = big
    rng = np.random.default_rng(5)
    x = rng.standard_normal(BIG[1]).astype(np.float32)
    y = rng.standard_normal(BIG[0]).astype(np.float32)
    X = rng.standard_normal((BIG[1], 3)).astype(np.float32)
    Sf, Tf = S.astype(np.float64), T.astype(np.float64)
    want = Sf.T @ (c * (Tf @ x.astype(np.float64)))
    np.testing.assert_allclose(r @ x, want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    wantX = Sf.T @ (c[:, None] * (Tf @ X.astype(np.float64)))
    np.testing.assert_allclose(r @ X, wantX, rtol=1e-4, atol=1e-3 * np.abs(wantX).max())
    wanty = (y.astype(np.float64) @ Sf.T * c) @ Tf
    np.testing.assert_allclose(y @ r, wanty, rtol=1e-4, atol=1e-3 * np.abs(wanty).max())
    assert r.T.shape == BIG[::-1]
    np.testing.assert_allclose(r.T @ y, wanty, rtol=1e-4, atol=1e-3 * np.abs(wanty).max())


def test_big_save_load(big, tmp_path):
    r, *_ = big
    path = tmp_path / "big.safetensors"
    signcut.save(path, r)
    header = int.from_bytes(path.read_bytes()[:8], "little")
    assert os.path.getsize(path) == 8 + header + r.nbytes
    back = signcut.load(path)
    assert back.shape == BIG and back.size == r.size and back.nbytes == r.nbytes
    for a, b in zip(r.signs, back.signs):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(r.coef, back.coef)


def test_big_matches_small_shape_with_same_cuts(big):
    """The same cuts cut down to a small shape give the same entries (no index wraps)."""
    r, S, T, c = big
    small = SignCut((64, 64), [r.signs[0][:, :1].copy(), r.signs[1][:, :1].copy()], r.coef)
    np.testing.assert_array_equal(small.expand(), r[:64, :64])


@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_big_decompose_is_refused_before_allocating(monkeypatch, dtype):
    """decompose on 2.8e9 entries (a zero-stride view: nothing big exists) with 16 GiB said to
    be available: MemoryError naming the need (2 float32 copies: 20.86 GiB), computed without
    wrapping, and nothing of the input's size allocated before the refusal."""
    from signcut import _validate
    monkeypatch.setattr(_validate, "available_memory", lambda: 16 * 2**30)
    A = np.broadcast_to(np.ones(1, dtype), BIG)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"needs about 20\.86 GiB"):
            signcut.decompose(A, width=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_big_tensor_decompose_is_refused(monkeypatch):
    """An order-3 tensor of 2**31 + 2**20 entries (one float32 copy: 8.0 GiB) with 4 GiB said
    to be available: MemoryError."""
    from signcut import _validate
    monkeypatch.setattr(_validate, "available_memory", lambda: 4 * 2**30)
    A = np.broadcast_to(np.zeros(1, np.int8), (2**11 + 1, 2**10, 2**10))
    with pytest.raises(MemoryError, match="shape"):
        signcut.decompose(A, width=1)
