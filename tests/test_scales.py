"""Scale vectors and column weights: ``decompose(A, scales=..., col_weights=d)``.

Against NumPy references: the approximation is ``diag(r) (sum_j c_j s_j t_j^T) diag(k)``
plus the sparse part; the error history is exact in the result's norm (Frobenius, or
column-weighted); budgets count the scales; every operation on a SignCut with scales agrees
with the same operation on its expansion; files keep them (format version 4) and older files
load as before; continuations keep them; bad input is refused with a clear error.
"""
import pickle
import warnings

import numpy as np
import pytest

import signcut
from signcut import SignCut, _budget
from reference import pack


def heterogeneous(m, n, spread=0.5, seed=0):
    """Gaussian with lognormal row and column sizes: ``diag(r) G diag(k)``."""
    rng = np.random.default_rng(seed)
    r = np.exp(spread * rng.standard_normal(m))
    k = np.exp(spread * rng.standard_normal(n))
    return (r[:, None] * rng.standard_normal((m, n)) * k[None, :]).astype(np.float32)


def rel(A, X, weights=None):
    A, X = np.asarray(A, np.float64), np.asarray(X, np.float64)
    w = 1.0 if weights is None else weights
    return float(np.linalg.norm((A - X) * w) / np.linalg.norm(A * w))


def reference(sc):
    """The expansion computed in float64 from the parts (no signcut code but unpacking)."""
    from reference import unpack
    dims = sc.tensor_shape
    out = np.zeros(dims)
    factors = [unpack(b, d) if len(b) else np.zeros((0, d)) for b, d in zip(sc.signs, dims)]
    for a, v in enumerate(sc.scales):
        if v is not None:
            factors[a] = factors[a] * v.astype(np.float64)
    letters = "abcdefghijklmnopqrstuvwxyz"[:len(dims)]
    out = np.einsum(",".join("z" + c for c in letters) + ",z->" + letters, *factors,
                    sc.coef.astype(np.float64)) if sc.width else out
    if sc.tensorize:
        out = out.transpose(np.argsort(sc.tensorize["axes"])).reshape(sc.tensorize["shape"])
    if sc.outliers is not None and len(sc.outliers):
        out.reshape(-1)[sc.outliers.index] += sc.outliers.dense_values(np.float64)
    return out


# ------------------------------------------------------------------ decompose
@pytest.mark.parametrize("scales, modes", [("rows", [0]), ("cols", [1]), ("both", [0, 1]),
                                           ((1,), [1]), ([-1, 0], [0, 1])])
def test_scales_of_a_matrix(scales, modes):
    A = heterogeneous(70, 90)
    r = signcut.decompose(A, bits_per_entry=4, seed=0, scales=scales)
    assert [a for a, v in enumerate(r.scales) if v is not None] == modes
    for v in r.scales:
        if v is not None:
            assert v.dtype == np.float16 and v.max() == 1 and (v > 0).all()
            assert not v.flags.writeable
    X = r.expand()
    np.testing.assert_allclose(X, reference(r), rtol=1e-5, atol=1e-6 * np.abs(X).max())
    assert r.error_norm == "frobenius"
    assert r.rel_error == pytest.approx(rel(A, X), rel=1e-5)
    # budgets count the float16 scales
    scale_bytes = 2 * sum(A.shape[a] for a in modes)
    assert r.scales_nbytes == scale_bytes
    assert r.nbytes == _budget.signs_nbytes(r.width, A.shape) + scale_bytes
    assert r.bits_per_entry == pytest.approx(8 * r.nbytes / A.size, rel=1e-3)
    assert 4 - _budget.cut_bits(A.shape) / A.size < r.bits_per_entry <= 4
    plain = signcut.decompose(A, bits_per_entry=4, seed=0)
    assert r.width < plain.width                 # the scales took some of the budget
    assert r.rel_error < 0.9 * plain.rel_error   # ... and pay for it on this matrix


def test_error_history_is_exact_after_every_cut():
    A = heterogeneous(40, 64, seed=2)
    r = signcut.decompose(A, width=150, seed=1, scales="both", block_size=7)
    for k in (1, 2, 7, 8, 64, 65, 150):
        assert r.errors[k - 1] == pytest.approx(rel(A, r.truncate(k).expand()), rel=1e-4)
    assert (np.diff(r.errors) <= 1e-12).all()


def test_ratio_and_width_budgets():
    A = heterogeneous(64, 80).astype(np.float64)
    r = signcut.decompose(A, ratio=0.1, seed=0, scales="both")
    assert r.ratio <= 0.1 and r.nbytes <= 0.1 * A.nbytes
    assert r.nbytes + _budget.signs_nbytes(1, A.shape) > 0.1 * A.nbytes
    w = signcut.decompose(A, width=20, seed=0, scales="both")
    assert w.width == 20                          # width counts cuts only


def test_budget_that_affords_no_cut_beside_the_scales():
    A = heterogeneous(8, 8)
    with pytest.raises(ValueError, match="scales"):
        signcut.decompose(A, bits_per_entry=4.1, scales="both")   # 32 bytes of scales


def test_auto_keeps_gaussian_plain_bit_for_bit():
    A = np.random.default_rng(5).standard_normal((80, 120)).astype(np.float32)
    r = signcut.decompose(A, bits_per_entry=3, seed=4, scales="auto")
    plain = signcut.decompose(A, bits_per_entry=3, seed=4)
    assert not r.has_scales
    assert np.array_equal(r.coef, plain.coef)
    assert all(np.array_equal(a, b) for a, b in zip(r.signs, plain.signs))
    heavy = np.random.default_rng(5).standard_t(3, (80, 120)).astype(np.float32)
    assert not signcut.decompose(heavy, bits_per_entry=3, scales="auto").has_scales


def test_auto_scales_what_pays():
    A = heterogeneous(120, 150, spread=0.7)
    auto = signcut.decompose(A, bits_per_entry=4, seed=0, scales="auto")
    assert auto.has_scales
    plain = signcut.decompose(A, bits_per_entry=4, seed=0)
    assert auto.rel_error < plain.rel_error
    # rows only vary: a column scale would not pay
    rows = heterogeneous(120, 150, spread=0.0) * np.exp(
        np.random.default_rng(1).standard_normal(120))[:, None].astype(np.float32)
    got = signcut.decompose(rows, bits_per_entry=4, seed=0, scales="auto")
    assert got.scales[0] is not None and got.scales[1] is None


def test_rtol_is_met_in_the_result_norm():
    A = heterogeneous(60, 80, seed=3)
    r = signcut.decompose(A, rtol=0.1, seed=0, scales="both")
    assert r.stopped_by == "rtol"
    assert rel(A, r.expand()) <= 0.1 + 1e-6
    assert r.errors[-1] <= 0.1 < r.errors[-2]
    assert signcut.decompose(A, rtol=1.0, scales="both").width == 0


def test_zero_rows_and_columns_get_scale_zero():
    A = heterogeneous(30, 40)
    A[3] = 0
    A[:, 7] = 0
    r = signcut.decompose(A, bits_per_entry=6, seed=0, scales="both")
    assert r.scales[0][3] == 0 and r.scales[1][7] == 0
    X = r.expand()
    assert not X[3].any() and not X[:, 7].any()
    assert r.rel_error == pytest.approx(rel(A, X), rel=1e-5)
    zero = signcut.decompose(np.zeros((5, 6)), width=3, scales="both")
    assert zero.width == 0 and zero.rel_error == 0 and not zero.has_scales


def test_scales_with_outliers():
    A = heterogeneous(50, 60)
    A[4, 5] = 400.0
    r = signcut.decompose(A, bits_per_entry=6, seed=0, scales="both", outliers="auto")
    assert r.outliers is not None and 4 * 60 + 5 in r.outliers.index
    X = r.expand()
    assert X[4, 5] == pytest.approx(A[4, 5], rel=1e-3)
    assert r.rel_error == pytest.approx(rel(A, X), rel=1e-5)
    assert r.nbytes == _budget.signs_nbytes(r.width, A.shape) + 220 + r.outliers.nbytes


@pytest.mark.parametrize("scales", ["rows", "cols", "both", (1,), "auto"])
def test_tensor_scales(scales):
    rng = np.random.default_rng(0)
    T = (rng.standard_normal((6, 7, 9)) * np.exp(rng.standard_normal(6))[:, None, None]
         * np.exp(rng.standard_normal(9))[None, None, :]).astype(np.float32)
    r = signcut.decompose(T, bits_per_entry=6, seed=0, scales=scales)
    X = r.expand()
    np.testing.assert_allclose(X, reference(r), rtol=1e-4, atol=1e-5 * np.abs(X).max())
    assert r.rel_error == pytest.approx(rel(T, X), rel=1e-4)
    want = {"rows": [0], "cols": [2], "both": [0, 1, 2], (1,): [1]}.get(scales)
    if want is not None:
        assert [a for a, v in enumerate(r.scales) if v is not None] == want


def test_tensorized_matrix_with_scales():
    A = heterogeneous(12, 16)
    r = signcut.decompose(A, bits_per_entry=6, seed=0, scales="both", shape=(3, 4, 4, 4),
                          axes=(0, 2, 1, 3))
    assert r.tensor_shape == (3, 4, 4, 4) and r.scales[3] is not None
    assert r.rel_error == pytest.approx(rel(A, r.expand()), rel=1e-4)
    np.testing.assert_allclose(r.expand(), reference(r), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ col_weights
def test_col_weights_minimise_the_weighted_error():
    # columns small where their weight is large, as in trained layers: the weighted target
    # A diag(d) is homogeneous, A is not
    rng = np.random.default_rng(7)
    d = np.exp(1.0 * rng.standard_normal(96))
    A = (rng.standard_normal((64, 96)) / d).astype(np.float32)
    r = signcut.decompose(A, bits_per_entry=4, seed=0, col_weights=d)
    assert r.error_norm == "col_weights"
    assert r.scales[0] is None and r.scales[1] is not None     # 1/d, normalised
    X = r.expand()
    assert r.rel_error == pytest.approx(rel(A, X, d), rel=1e-5)
    assert r.norm == pytest.approx(np.linalg.norm(A * d), rel=1e-5)
    plain = signcut.decompose(A, bits_per_entry=4, seed=0)
    assert r.rel_error < 0.8 * rel(A, plain.expand(), d)
    for k in (1, 33, r.width):
        assert r.errors[k - 1] == pytest.approx(rel(A, r.truncate(k).expand(), d), rel=1e-4)
    both = signcut.decompose(A, bits_per_entry=4, seed=0, col_weights=d, scales="both")
    assert both.error_norm == "col_weights" and both.scales[0] is not None
    assert both.rel_error == pytest.approx(rel(A, both.expand(), d), rel=1e-5)
    rt = signcut.decompose(A, rtol=0.3, seed=0, col_weights=d)
    assert rel(A, rt.expand(), d) <= 0.3 + 1e-6 and rt.stopped_by == "rtol"


def test_col_weights_zero_and_outliers():
    rng = np.random.default_rng(8)
    A = rng.standard_normal((30, 40)).astype(np.float32)
    A[2, 3] = 30.0            # large, but its column does not count
    A[5, 6] = 5.0             # smaller, in a column that counts a lot
    d = np.ones(40)
    d[3] = 0.0
    d[6] = 20.0
    r = signcut.decompose(A, bits_per_entry=8, seed=0, col_weights=d, outliers=2 / A.size)
    assert list(r.outliers.index) != [] and 5 * 40 + 6 in r.outliers.index
    assert 2 * 40 + 3 not in r.outliers.index
    X = r.expand()
    assert not X[:, 3].any()
    assert r.rel_error == pytest.approx(rel(A, X, d), rel=1e-5)


def test_constant_col_weights_store_no_scales():
    A = heterogeneous(20, 30)
    r = signcut.decompose(A, width=10, seed=0, col_weights=np.full(30, 3.0))
    assert not r.has_scales and r.error_norm == "col_weights"
    plain = signcut.decompose(A, width=10, seed=0)
    np.testing.assert_allclose(r.errors, plain.errors, rtol=1e-4)
    np.testing.assert_allclose(r.coef, plain.coef, rtol=1e-4)


BAD = [
    (dict(scales="columns"), ValueError, "scales must be"),
    (dict(scales=3), TypeError, "scales must be"),
    (dict(scales=(0, 2)), ValueError, "outside the 2 modes"),
    (dict(scales=("a",)), TypeError, "scales must be"),
    (dict(col_weights=np.ones(5)), ValueError, r"one weight per column: shape \(30,\)"),
    (dict(col_weights=np.ones((30, 1))), ValueError, "one weight per column"),
    (dict(col_weights=-np.ones(30)), ValueError, "must be >= 0: 30 negative"),
    (dict(col_weights=np.r_[np.ones(29), np.nan]), ValueError, "finite: 1 NaN"),
    (dict(col_weights=np.r_[np.ones(29), np.inf]), ValueError, "finite"),
    (dict(col_weights=np.zeros(30)), ValueError, "all zero"),
    (dict(col_weights=np.ones(30) * 1j), TypeError, "real numbers"),
    (dict(col_weights="ones"), TypeError, "array of numbers"),
    (dict(col_weights=np.ones(6), shape=(20, 6, 5), axes=(0, 1, 2)), ValueError, "shape= or axes="),
]


@pytest.mark.parametrize("kwargs, exc, match", BAD, ids=[str(b[0])[:40] for b in BAD])
def test_bad_input(kwargs, exc, match):
    A = heterogeneous(20, 30)
    with pytest.raises(exc, match=match):
        signcut.decompose(A, width=3, **kwargs)


def test_bad_input_other_arrays():
    with pytest.raises(ValueError, match="2 or more dimensions"):
        signcut.decompose(np.ones(10), width=2, scales="rows")
    with pytest.raises(ValueError, match="2 or more dimensions"):
        signcut.decompose(np.ones(10), width=2, col_weights=np.ones(10))
    assert not signcut.decompose(np.arange(1.0, 11.0), width=2, scales="auto").has_scales
    import scipy.sparse as sp
    with pytest.raises(ValueError, match="dense arrays"):
        signcut.decompose(sp.eye(5, format="csr"), width=2, scales="both")


def test_signcut_checks_its_scales():
    signs = [pack(np.ones((2, 3))), pack(np.ones((2, 4)))]
    with pytest.raises(ValueError, match="1 scale vectors for 2 modes"):
        SignCut((3, 4), signs, [1.0, 2.0], scales=[None])
    with pytest.raises(ValueError, match=r"shape \(4,\), expected \(3,\)"):
        SignCut((3, 4), signs, [1.0, 2.0], scales=[np.ones(4), None])
    with pytest.raises(ValueError, match="finite"):
        SignCut((3, 4), signs, [1.0, 2.0], scales=[np.array([1, np.nan, 1]), None])
    with pytest.raises(TypeError, match="real numbers"):
        SignCut((3, 4), signs, [1.0, 2.0], scales=[np.array(["a", "b", "c"]), None])
    with pytest.raises(ValueError, match="error_norm"):
        SignCut((3, 4), signs, [1.0, 2.0], error_norm="l1")
    sc = SignCut((3, 4), signs, [1.0, 2.0], scales=[np.arange(3), None])
    assert sc.scales[0].dtype == np.float32 and sc.scales_nbytes == 12


# ------------------------------------------------------------------ operations
def scaled(shape, width, modes, seed=0, sparse=0, dtype=np.float16):
    rng = np.random.default_rng(seed)
    signs = [pack(rng.choice([-1.0, 1.0], (width, d))) for d in shape]
    scales = [rng.uniform(0.1, 1.0, d).astype(dtype) if a in modes else None
              for a, d in enumerate(shape)]
    out = None
    if sparse:
        size = int(np.prod(shape))
        index = np.sort(rng.choice(size, min(sparse, size), replace=False))
        out = (index, rng.standard_normal(len(index)).astype(np.float16), 1)
    return SignCut(shape, signs, rng.standard_normal(width), scales=scales, outliers=out)


def close(got, want):
    got = got.expand() if isinstance(got, SignCut) else got
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-5,
                               atol=2e-5 * max(1.0, float(np.abs(want).max(initial=0))))


MATRICES = [((1, 1), (0, 1)), ((5, 63), (0,)), ((64, 3), (1,)), ((13, 65), (0, 1)),
            ((7, 9), (0, 1))]


@pytest.mark.parametrize("shape, modes", MATRICES, ids=str)
@pytest.mark.parametrize("sparse", [0, 3])
def test_matrix_operations(shape, modes, sparse):
    m, n = shape
    X = scaled(shape, 9, modes, seed=m + n, sparse=sparse)
    D = reference(X)
    close(X, D)
    rng = np.random.default_rng(1)
    x, y, Xm = rng.standard_normal(n), rng.standard_normal(m), rng.standard_normal((n, 5))
    close(X @ x, D @ x)
    close(y @ X, y @ D)
    close(X @ Xm, D @ Xm)
    Y = rng.standard_normal((4, m))
    close(Y @ X, Y @ D)
    close(X.aslinearoperator().rmatvec(y), D.T @ y)
    close(X.T, D.T)
    close(X[1:, ::2], D[1:, ::2])
    close(X[m - 1], D[m - 1])
    close(X[[0, m - 1], :], D[[0, m - 1], :])
    close(X[D > 0], D[D > 0])
    close(X.sum(), D.sum())
    close(X.sum(axis=0), D.sum(0))
    close(X.mean(axis=1, keepdims=True), D.mean(1, keepdims=True))
    close(-2.5 * X, -2.5 * D)
    close(X / 4, D / 4)
    close(np.linalg.norm(X), np.linalg.norm(D))
    close(np.var(X), np.var(D))
    close(np.trace(X), np.trace(D))
    close(X.diagonal(), np.diagonal(D))
    close(X.contract(1, x), D @ x)
    close(X.contract(0, y), y @ D)
    close(X.reshape(n, m), D.reshape(n, m))
    close(X[None, :, :, None], D[None, :, :, None])
    close(X * X, D * D)
    close(X + X, 2 * D)
    assert isinstance(X + X, SignCut) and isinstance(X * X, SignCut)
    close(np.vdot(X, X * 2), np.vdot(D, 2 * D))
    close(X.vdot(D), np.vdot(D, D))
    w, f = X.to_cp(ignore_sparse=True)
    close(np.einsum("j,ij,kj->ik", w, *f), D - (X.outliers.to_sparse().toarray()
                                                if sparse else 0))


def test_products_keep_the_scales_exact():
    X = scaled((6, 7), 4, (0, 1), seed=1)
    Y = scaled((6, 7), 3, (1,), seed=2)
    P = X * Y
    assert P.scales[0].dtype == np.float16 and P.scales[1].dtype == np.float32
    np.testing.assert_array_equal(P.scales[1], X.scales[1].astype(np.float32) * Y.scales[1])
    close(P, reference(X) * reference(Y))


def test_sums_with_different_scales_expand():
    X = scaled((6, 7), 4, (0, 1), seed=1, sparse=2)
    Y = scaled((6, 7), 3, (1,), seed=2)
    with signcut.options(expand="allow"):
        for got, want in ((X + Y, reference(X) + reference(Y)),
                          (X - Y, reference(X) - reference(Y)),
                          (X + 2.0, reference(X) + 2), (1.5 - X, 1.5 - reference(X))):
            assert isinstance(got, np.ndarray)
            close(got, want)
    with signcut.options(expand="error", expand_threshold=0):
        with pytest.raises(signcut.ExpansionError):
            X + Y
        with pytest.raises(signcut.ExpansionError):
            X + 1
    # constant scales fold into the coefficients: a broadcast row adds as a SignCut
    row = scaled((1, 7), 2, (0, 1), seed=3)
    Z = scaled((6, 7), 3, (1,), seed=4)
    Z = SignCut(Z.tensor_shape, Z.signs, Z.coef, scales=[None, row.scales[1]])
    got = Z + row
    assert isinstance(got, SignCut)
    close(got, reference(Z) + reference(row))


@pytest.mark.parametrize("shape, modes", [((3, 4, 5), (0, 2)), ((2, 65, 3), (1,)),
                                          ((4, 1, 6, 2), (0, 1, 2, 3))], ids=str)
def test_tensor_operations(shape, modes):
    X = scaled(shape, 7, modes, seed=sum(shape), sparse=2)
    D = reference(X)
    rng = np.random.default_rng(2)
    v = rng.standard_normal(shape[-1])
    close(X.contract(-1, v), np.tensordot(D, v, ([-1], [0])))
    close(X[1:, ..., ::2], D[1:, ..., ::2])
    close(X.sum(axis=(0, 2)), D.sum((0, 2)))
    close(X.transpose(), D.transpose())
    close(X.diagonal(0, 0, 2), np.diagonal(D, 0, 0, 2))
    close(np.trace(X, 0, 0, 2), np.trace(D, 0, 0, 2))
    close(X * X, D * D)
    close(np.linalg.norm(X), np.linalg.norm(D))
    close(np.vdot(X, X), np.vdot(D, D))
    close(X.reshape(-1), D.reshape(-1))
    close(np.broadcast_to(X[:1], (3,) + shape[1:]), np.broadcast_to(D[:1], (3,) + shape[1:]))


def test_width_zero_and_float32_scales():
    X = scaled((5, 8), 0, (0, 1))
    close(X, np.zeros((5, 8)))
    assert np.linalg.norm(X) == 0 and X.sum() == 0
    Y = scaled((5, 8), 6, (0, 1), dtype=np.float32)
    assert Y.scales_nbytes == 4 * 13
    close(np.linalg.norm(Y), np.linalg.norm(reference(Y)))


def test_copies_and_pickles_keep_the_scales_read_only():
    X = scaled((5, 8), 3, (0,), sparse=1)
    for Y in (X.copy(), pickle.loads(pickle.dumps(X)), X.truncate(2)):
        assert Y.scales[1] is None and np.array_equal(Y.scales[0], X.scales[0])
        assert not Y.scales[0].flags.writeable
        with pytest.raises(ValueError):
            Y.scales[0].setflags(write=True)
    assert np.may_share_memory(X, X.scales[0])
    assert not np.may_share_memory(X.copy(), X.scales[0])


def test_recompress_of_scaled():
    A = heterogeneous(30, 40)
    r = signcut.decompose(A, bits_per_entry=6, seed=0, scales="both")
    again = r.recompress(bits_per_entry=6, seed=0, scales="both")
    assert again.has_scales and again.bits_per_entry <= 6
    assert again.rel_error == pytest.approx(rel(r.expand(), again.expand()), rel=1e-4)


# ------------------------------------------------------------------ files and continuing
def test_save_load_round_trip(tmp_path):
    A = heterogeneous(30, 50)
    d = np.random.default_rng(0).uniform(0.5, 2, 50)
    r = signcut.decompose(A, bits_per_entry=6, seed=0, scales="both", col_weights=d,
                          outliers=0.01)
    X = scaled((4, 5, 6), 3, (1,), dtype=np.float32)
    signcut.save(tmp_path / "a.sct", {"r": r, "x": X, "plain": signcut.decompose(A, width=2)},
                 history=True)
    back = signcut.load(tmp_path / "a.sct")
    for name, want in (("r", r), ("x", X)):
        got = back[name]
        assert np.array_equal(got.expand(), want.expand())
        assert got.error_norm == want.error_norm and got.nbytes == want.nbytes
        for a, b in zip(got.scales, want.scales):
            assert (a is None and b is None) or (a.dtype == b.dtype and np.array_equal(a, b))
    assert np.array_equal(back["r"].errors, r.errors)
    assert back["plain"].error_norm == "frobenius" and not back["plain"].has_scales
    from safetensors.numpy import load_file
    raw = load_file(tmp_path / "a.sct")
    assert raw["r/scales.0"].dtype == np.float16 and raw["x/scales.1"].dtype == np.float32
    assert format_version(tmp_path / "a.sct") == "4"


def format_version(path):
    from safetensors import safe_open
    with safe_open(str(path), "np") as f:
        return f.metadata()["format_version"]


def test_files_without_scales_keep_their_version(tmp_path):
    A = heterogeneous(20, 30)
    for kwargs, version in ((dict(), "1"), (dict(outliers=0.01), "2")):
        signcut.save(tmp_path / "p.sct", signcut.decompose(A, width=3, **kwargs))
        assert format_version(tmp_path / "p.sct") == version


def _rewrite(path, change):
    """Edit a file's header JSON (and keep its data)."""
    import json
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    change(header)
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def _entry_edit(key, value):
    import json

    def change(header):
        meta = header["__metadata__"]
        d = json.loads(meta["decompositions"])
        d["signcut"][key] = value
        meta["decompositions"] = json.dumps(d)
    return change


@pytest.mark.parametrize("change, match", [
    (_entry_edit("scales", ["F16"]), "scales must be"),
    (_entry_edit("scales", ["F64", None]), "scales must be"),
    (_entry_edit("scales", [None, None]), "scales must be"),
    (_entry_edit("scales", ["F32", None]), "wrong dtype"),
    (_entry_edit("scales", None), "unexpected tensors"),
    (_entry_edit("error_norm", "l1"), "error_norm"),
    (lambda h: h["__metadata__"].update(format_version="3"), "version 4"),
    (lambda h: h["signcut/scales.0"].update(shape=[4]), "wrong shape"),
])
def test_corrupt_scales_raise_format_error(tmp_path, change, match):
    sc = scaled((5, 6), 2, (0,))
    path = tmp_path / "s.sct"
    signcut.save(path, sc)
    _rewrite(path, change)
    with pytest.raises(signcut.FormatError, match=match):
        signcut.load(path)


def test_non_finite_scales_in_a_file(tmp_path):
    sc = scaled((5, 6), 2, (0,))
    path = tmp_path / "s.sct"
    signcut.save(path, sc)
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    import json
    info = json.loads(raw[8:8 + n])["signcut/scales.0"]
    begin = 8 + n + info["data_offsets"][0]
    raw[begin:begin + 2] = np.array([np.inf], np.float16).tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(signcut.FormatError, match="finite"):
        signcut.load(path)


def test_continuation_keeps_the_scales():
    A = heterogeneous(50, 70, seed=4)
    d = np.random.default_rng(1).uniform(0.5, 2.0, 70)
    long = signcut.decompose(A, width=120, seed=3, scales="both", col_weights=d)
    part = long.truncate(40)
    more = signcut.decompose(A, init=part, width=120, seed=3, col_weights=d)
    assert more.width == 120 and np.array_equal(more.errors[:40], part.errors)
    for a, b in zip(more.scales, long.scales):
        assert np.array_equal(a, b)
    for a, b in zip(more.signs, long.signs):
        assert np.array_equal(a[:40], b[:40])
    assert more.rel_error == pytest.approx(rel(A, more.expand(), d), rel=1e-4)
    assert more.rel_error <= 1.03 * long.rel_error
    again = signcut.decompose(A, init=more, rtol=0.5 * more.rel_error, seed=3, col_weights=d)
    assert again.rel_error <= 0.5 * more.rel_error and again.stopped_by == "rtol"
    with pytest.raises(ValueError, match="leave scales out"):
        signcut.decompose(A, init=part, width=60, scales="both", col_weights=d)
    with pytest.raises(ValueError, match="pass the same col_weights"):
        signcut.decompose(A, init=part, width=60)
    with pytest.raises(ValueError, match="another array"):
        signcut.decompose(A, init=part, width=60, col_weights=d * 2)
    plain = signcut.decompose(A, width=10)
    with pytest.raises(ValueError, match="without col_weights"):
        signcut.decompose(A, init=plain, width=20, col_weights=d)
    with pytest.raises(ValueError, match="init has no scales"):
        signcut.decompose(A, init=plain, width=20, scales="rows")


def test_callback_sees_estimates_and_can_stop():
    A = heterogeneous(40, 50)
    seen = []

    def callback(k, e):
        seen.append((k, e))
        return k == 15
    r = signcut.decompose(A, width=100, seed=0, scales="both", callback=callback)
    assert r.width == 15 and r.stopped_by == "callback"
    assert [k for k, _ in seen] == list(range(1, 16))
    assert all(0 < e <= 1 for _, e in seen)
    seen.clear()
    more = signcut.decompose(A, width=20, seed=0, init=r, callback=lambda k, e: seen.append(k))
    assert more.width == 20 and seen == list(range(16, 21))     # counted on from init's cuts


def test_max_seconds_with_scales():
    A = heterogeneous(200, 200)
    r = signcut.decompose(A, max_seconds=0.05, seed=0, scales="both")
    assert r.stopped_by in ("max_seconds", "width") and r.rel_error == pytest.approx(
        rel(A, r.expand()), rel=1e-4)


def test_transpose_of_a_weighted_result_forgets_its_history():
    A = heterogeneous(20, 30)
    r = signcut.decompose(A, width=5, seed=0, col_weights=np.linspace(1, 2, 30))
    assert np.isnan(r.T.rel_error) and r.T.norm is None
    s = signcut.decompose(A, width=5, seed=0, scales="both")
    assert s.T.rel_error == s.rel_error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (2 * r).error_norm == "col_weights"


def test_same_bits_for_any_thread_count():
    A = heterogeneous(90, 130, seed=6)
    d = np.random.default_rng(2).uniform(0.5, 2.0, 130)
    runs = [signcut.decompose(A, rtol=0.2, seed=1, scales="auto", col_weights=d, n_threads=t)
            for t in (1, 2, 1)]
    for r in runs[1:]:
        assert np.array_equal(r.coef, runs[0].coef) and np.array_equal(r.errors, runs[0].errors)
        assert all(np.array_equal(a, b) for a, b in zip(r.signs, runs[0].signs))
        assert all(np.array_equal(a, b) for a, b in zip(r.scales, runs[0].scales))
