"""Exact numbers from the signs: the gram_mul kernel of every instruction set against NumPy
and the scalar kernel, the tiled inner product of cuts (same bits for any thread count and
instruction set), Frobenius norms, inner products with SignCuts and arrays, traces; and a
(70000, 40000) SignCut scaled, added, sliced, contracted and measured without expanding."""
import tracemalloc

import numpy as np
import pytest

from signcut import SignCut, _core
from reference import pack, random_signs
from test_algebra import SHAPES, random_signcut, tensorized

SIZES = [1, 7, 63, 64, 65, 127, 128, 129, 300, 1000]


@pytest.mark.parametrize("length", SIZES)
@pytest.mark.parametrize("na,nb", [(0, 3), (1, 1), (3, 5), (4, 4), (5, 9), (13, 6)])
def test_gram_mul(isa, rng, length, na, nb):
    a, b = random_signs(rng, na, length), random_signs(rng, nb, length)
    p0 = rng.standard_normal((na, nb))
    p = p0.copy()
    _core.kernel_gram_mul(isa, p, pack(a) if na else np.zeros((0, (length + 63) // 64), np.uint64),
                          pack(b), length)
    np.testing.assert_array_equal(p, p0 * (a @ b.T))             # exact integers
    ps = p0.copy()
    _core.kernel_gram_mul("scalar", ps, pack(a) if na else np.zeros((0, (length + 63) // 64),
                                                                     np.uint64), pack(b), length)
    np.testing.assert_array_equal(p, ps)


def cuts_of(sc):
    return sc.signs, sc.coef


@pytest.mark.parametrize("shape", [(1,), (65,), (3, 130), (64, 64), (5, 3, 70), (2, 3, 1, 2, 3)])
@pytest.mark.parametrize("wx,wy", [(0, 4), (1, 1), (5, 300), (129, 130), (300, 257)])
def test_cuts_inner_against_numpy(isa, shape, wx, wy):
    x, y = random_signcut(shape, wx, 1), random_signcut(shape, wy, 2)
    X, Y = x.expand().astype(np.float64), y.expand().astype(np.float64)
    got = _core.cuts_inner(x.signs, x.coef, y.signs, y.coef, shape, 2, isa)
    scale = float(np.abs(x.coef).sum() * np.abs(y.coef).sum()) * np.prod(shape)
    assert got == pytest.approx((X * Y).sum(), rel=1e-6, abs=1e-6 * scale)
    own = _core.cuts_inner(x.signs, x.coef, x.signs, x.coef, shape, 2, isa)   # half the pairs
    assert own == pytest.approx((X * X).sum(), rel=1e-6, abs=1e-6 * scale)
    assert own == pytest.approx(_core.cuts_inner(x.signs, x.coef, [b.copy() for b in x.signs],
                                                 x.coef.copy(), shape, 2, isa), rel=1e-12)


def test_cuts_inner_same_bits_for_any_threads_and_instruction_set():
    x, y = random_signcut((70, 200), 700, 3), random_signcut((70, 200), 500, 4)
    values = {(isa, nt, pair): _core.cuts_inner(*cuts_of(x), *(cuts_of(x if pair else y)),
                                                x.tensor_shape, nt, isa)
              for isa in _core.supported_kernels() for nt in (1, 2, 3) for pair in (0, 1)}
    for pair in (0, 1):
        assert len({v for k, v in values.items() if k[2] == pair}) == 1


def test_cuts_inner_errors():
    x = random_signcut((5, 6), 3)
    with pytest.raises(ValueError):
        _core.cuts_inner(x.signs, x.coef, x.signs[:1], x.coef, (5, 6))
    with pytest.raises(ValueError):
        _core.cuts_inner(x.signs, x.coef[:2], x.signs, x.coef, (5, 6))
    with pytest.raises(ValueError):
        _core.cuts_inner(x.signs, x.coef, x.signs, x.coef, (5, 7 + 64))


# ------------------------------------------------------------------ through the SignCut
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("outliers", [0, 4])
def test_norm_and_inner_products(shape, outliers):
    for wx, wy in ((0, 3), (6, 9)):
        x = random_signcut(shape, wx, 5, outliers=outliers)
        y = random_signcut(shape, wy, 6, outliers=outliers + 1)
        X, Y = x.expand().astype(np.float64), y.expand().astype(np.float64)
        tol = dict(rel=1e-5, abs=1e-5 * (1 + np.abs(X).sum()) * (1 + np.abs(Y).max()))
        assert x.vdot(y) == pytest.approx((X * Y).sum(), **tol)
        assert x.vdot(x) == pytest.approx((X * X).sum(), **tol)
        assert x.frobenius_norm() == pytest.approx(np.linalg.norm(X), rel=1e-5, abs=1e-6)
        A = np.random.default_rng(7).standard_normal(shape)
        assert x.vdot(A) == pytest.approx((X * A).sum(), **tol)
        assert x.vdot(A.astype(np.float32).ravel()) == pytest.approx((X * A.astype(np.float32)).sum(), **tol)
        assert x.vdot(A > 0) == pytest.approx((X * (A > 0)).sum(), **tol)


def test_norm_and_inner_products_tensorized():
    for t in tensorized():
        T = t.expand().astype(np.float64)
        u = t * t - t
        U = u.expand().astype(np.float64)
        assert t.vdot(u) == pytest.approx((T * U).sum(), rel=1e-5, abs=1e-5)
        assert u.frobenius_norm() == pytest.approx(np.linalg.norm(U), rel=1e-5)
        A = np.arange(t.size, dtype=np.float64).reshape(t.shape)
        assert t.vdot(A) == pytest.approx((T * A).sum(), rel=1e-5, abs=1e-4)
    a, b = tensorized()[:2]
    with pytest.raises(ValueError, match="one shape"):
        a.vdot(b)
    plain = random_signcut(a.shape, 2)
    with pytest.raises(ValueError, match="tensorized differently"):
        a.vdot(plain)


def test_inner_product_errors():
    x = random_signcut((4, 5), 3)
    with pytest.raises(ValueError, match="20 entries"):
        x.vdot(np.ones(21))
    with pytest.raises(TypeError):
        x.vdot(np.ones(20, complex))


def test_norm_of_a_decomposition_is_its_error():
    """||A - X|| from ||A||, <X, A> and ||X||: the decomposition's own error."""
    import signcut
    A = np.random.default_rng(8).standard_normal((60, 50)).astype(np.float32)
    sc = signcut.decompose(A, width=30, seed=0, outliers=0.01)
    err2 = np.sum(A.astype(np.float64) ** 2) - 2 * sc.vdot(A) + sc.frobenius_norm() ** 2
    assert np.sqrt(err2) / sc.norm == pytest.approx(sc.rel_error, rel=1e-4)


# ------------------------------------------------------------------ a (70000, 40000) SignCut
BIG = (70_000, 40_000)


def big_signcut(width, seed):
    rng = np.random.default_rng(seed)
    signs = []
    for d in BIG:
        bits = rng.integers(0, 2**64, size=(width, (d + 63) // 64), dtype=np.uint64)
        bits[:, -1] &= np.uint64((1 << (d % 64)) - 1)
        signs.append(bits)
    index = np.sort(rng.choice(BIG[0] * BIG[1], 50, replace=False))
    return SignCut(BIG, signs, rng.integers(1, 9, width).astype(np.float32),
                   outliers=(index, np.arange(1, 51, dtype=np.float16), 0))


def unpacked(bits, d):
    flags = np.unpackbits(bits.view(np.uint8).reshape(len(bits), -1), axis=1, count=d,
                          bitorder="little")
    return 1 - 2 * flags.astype(np.int64)


def test_big_signcut_computes_without_expanding(monkeypatch):
    """Scale, add, slice, contract, norms and the LinearOperator products of 2.8e9 entries
    (11 GB dense) stay far below the dense size: under 64 MiB traced."""
    x, y = big_signcut(3, 1), big_signcut(2, 2)
    monkeypatch.setattr(SignCut, "expand", lambda *a, **k: pytest.fail("expanded"))
    v = np.random.default_rng(3).standard_normal(BIG[1])
    tracemalloc.start()
    try:
        z = 2 * x - y * 0.5 + 1.0
        block = z[65_000:65_010:3, -7:]
        row = z[12_345]
        col = z.contract(1, v)
        norm = x.frobenius_norm()
        cross = x.vdot(y)
        op = x.aslinearoperator()
        mv, rmv = op.matvec(v), op.rmatvec(np.ones(BIG[0]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
    assert z.width == 6 and z.shape == BIG and len(z.outliers) == 100 - len(
        np.intersect1d(x.outliers.index, y.outliers.index))
    monkeypatch.undo()
    # references from the few rows and columns involved, exact in integers / float64
    Sx, Tx = (unpacked(b, d) for b, d in zip(x.signs, BIG))
    Sy, Ty = (unpacked(b, d) for b, d in zip(y.signs, BIG))
    cx, cy = x.coef.astype(np.int64), y.coef.astype(np.int64)

    def entries(rows, cols):
        out = (2 * np.einsum("k,ki,kj->ij", cx, Sx[:, rows], Tx[:, cols])
               - 0.5 * np.einsum("k,ki,kj->ij", cy, Sy[:, rows], Ty[:, cols]) + 1.0)
        for sc, f in ((x, 2.0), (y, -0.5)):
            for flat, val in zip(sc.outliers.index, sc.outliers.dense_values(np.float64)):
                i, j = divmod(int(flat), BIG[1])
                if i in rows and j in cols:
                    out[list(rows).index(i), list(cols).index(j)] += f * val
        return out

    rows, cols = list(range(65_000, 65_010, 3)), list(range(BIG[1] - 7, BIG[1]))
    np.testing.assert_allclose(block.expand(), entries(rows, cols), rtol=1e-6)
    np.testing.assert_allclose(row[-5:], entries([12_345], cols[-5:])[0], rtol=1e-6)
    want = (2 * (cx * (Tx @ v)) @ Sx - 0.5 * (cy * (Ty @ v)) @ Sy + v.sum())
    sparse = [(divmod(int(f), BIG[1]), val * s) for sc, s in ((x, 2.0), (y, -0.5))
              for f, val in zip(sc.outliers.index, sc.outliers.dense_values(np.float64))]
    for (i, j), val in sparse:
        want[i] += val * v[j]
    np.testing.assert_allclose(col[[0, 12_345, BIG[0] - 1]], want[[0, 12_345, BIG[0] - 1]],
                               rtol=1e-4, atol=1e-3 * np.abs(want).max())
    want_mv = (cx * (Tx @ v)) @ Sx
    for f, val in zip(x.outliers.index, x.outliers.dense_values(np.float64)):
        i, j = divmod(int(f), BIG[1])
        want_mv[i] += val * v[j]
    np.testing.assert_allclose(mv, want_mv, rtol=1e-4, atol=1e-4 * np.abs(want_mv).max())
    want_rmv = (cx * Sx.sum(1)) @ Tx
    for f, val in zip(x.outliers.index, x.outliers.dense_values(np.float64)):
        want_rmv[int(f) % BIG[1]] += val
    np.testing.assert_allclose(rmv, want_rmv, rtol=1e-5)
    cuts2 = float((np.outer(cx, cx) * (Sx @ Sx.T) * (Tx @ Tx.T)).sum())
    xv = [(cx * Sx[:, i] * Tx[:, j]).sum() for (i, j) in (divmod(int(f), BIG[1])
                                                          for f in x.outliers.index)]
    sq = cuts2 + 2 * float(np.dot(xv, x.outliers.dense_values(np.float64))) + \
        float((x.outliers.dense_values(np.float64) ** 2).sum())
    assert norm == pytest.approx(np.sqrt(sq), rel=1e-12)
    assert cross == pytest.approx(float((np.outer(cx, cy) * (Sx @ Sy.T) * (Tx @ Ty.T)).sum())
                                  + sum_sparse_cross(x, y, Sx, Tx, Sy, Ty, cx, cy), rel=1e-12)


def sum_sparse_cross(x, y, Sx, Tx, Sy, Ty, cx, cy):
    total = 0.0
    for sc, S, T, c, other in ((y, Sx, Tx, cx, x), (x, Sy, Ty, cy, y)):
        for f, val in zip(sc.outliers.index, sc.outliers.dense_values(np.float64)):
            i, j = divmod(int(f), BIG[1])
            total += val * (c * S[:, i] * T[:, j]).sum()
    common, ia, ib = np.intersect1d(x.outliers.index, y.outliers.index, return_indices=True)
    return total + float(x.outliers.dense_values(np.float64)[ia]
                         @ y.outliers.dense_values(np.float64)[ib])
