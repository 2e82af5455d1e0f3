"""A SignCut for SciPy and TensorLy: its LinearOperator (the C products) in svds, lsqr and cg
against the same solvers on the dense matrix, scipy's own aslinearoperator, the sparse part
as a scipy.sparse array, and the cuts in TensorLy's CP layout."""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg as sla

import signcut
from signcut import SignCut
from test_algebra import SHAPES, random_signcut, tensorized


@pytest.fixture(scope="module")
def matrix():
    A = np.random.default_rng(0).standard_normal((120, 90)).astype(np.float32)
    A[:, :5] *= 10                                      # a few strong directions
    sc = signcut.decompose(A, bits_per_entry=12, seed=0, outliers=0.01)
    return sc, sc.expand().astype(np.float64)


def close(got, want, rtol=2e-5):
    scale = float(np.abs(want).max(initial=0.0)) or 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("make", [lambda sc: sc.aslinearoperator(),
                                  lambda sc: sla.aslinearoperator(sc),
                                  lambda sc: sc.aslinearoperator(np.float64)])
def test_operator_products(matrix, make):
    sc, X = matrix
    op = make(sc)
    assert op.shape == sc.shape
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(90), rng.standard_normal(120)
    Xr, Yr = rng.standard_normal((90, 4)), rng.standard_normal((120, 3))
    close(op.matvec(x), X @ x)
    close(op.matvec(x[:, None]), (X @ x)[:, None])
    close(op.rmatvec(y), X.T @ y)
    close(op.matmat(Xr), X @ Xr)
    close(op.rmatmat(Yr), X.T @ Yr)
    close(op @ x, X @ x)
    close(op.H @ y, X.T @ y)
    z = x + 1j * rng.standard_normal(90)
    close(op.matvec(z), X @ z)
    assert op.matvec(x.astype(np.float32)).dtype == np.result_type(op.dtype, np.float32)


def test_operator_refuses_other_orders_and_tensorized():
    for sc in (random_signcut((3, 4, 5), 2), tensorized()[0]):
        with pytest.raises(ValueError, match="matrix"):
            sc.aslinearoperator()


def test_svds_as_on_the_dense_matrix(matrix):
    sc, X = matrix
    got = sla.svds(sc.aslinearoperator(), k=6, return_singular_vectors=False, random_state=0)
    want = sla.svds(X.astype(np.float32), k=6, return_singular_vectors=False, random_state=0)
    np.testing.assert_allclose(np.sort(got), np.sort(want), rtol=1e-4)
    np.testing.assert_allclose(np.sort(got), np.linalg.svd(X, compute_uv=False)[:6][::-1],
                               rtol=1e-4)


def test_lsqr_as_on_the_dense_matrix(matrix):
    sc, X = matrix
    b = np.random.default_rng(2).standard_normal(120)
    got = sla.lsqr(sc.aslinearoperator(np.float64), b, atol=1e-10, btol=1e-10, iter_lim=500)[0]
    want = sla.lsqr(X, b, atol=1e-10, btol=1e-10, iter_lim=500)[0]
    exact = np.linalg.lstsq(X, b, rcond=None)[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(exact).max())
    np.testing.assert_allclose(got, exact, rtol=1e-3, atol=1e-4 * np.abs(exact).max())


def test_cg_as_on_the_dense_matrix(matrix):
    sc, X = matrix
    op = sc.aslinearoperator(np.float64)
    shift = 50.0
    normal = op.H @ op + shift * sla.aslinearoperator(scipy.sparse.eye_array(90))
    b = np.random.default_rng(3).standard_normal(90)
    got, info = sla.cg(normal, b, rtol=1e-10, maxiter=1000)
    want, info_dense = sla.cg(X.T @ X + shift * np.eye(90), b, rtol=1e-10, maxiter=1000)
    assert info == info_dense == 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


# ------------------------------------------------------------------ the sparse part
@pytest.mark.parametrize("shape", SHAPES)
def test_outliers_to_sparse(shape):
    sc = random_signcut(shape, 2, 1, outliers=5)
    sp = sc.outliers.to_sparse()
    assert isinstance(sp, scipy.sparse.coo_array) and sp.shape == shape and sp.nnz == 5
    assert sp.dtype == np.float32
    dense = np.zeros(shape, np.float32)
    dense.reshape(-1)[sc.outliers.index] = sc.outliers.dense_values()
    np.testing.assert_array_equal(sp.toarray(), dense)
    cuts = SignCut(sc.tensor_shape, sc.signs, sc.coef).expand()
    np.testing.assert_array_equal(cuts + sp.toarray(), sc.expand())
    assert sc.T.outliers.to_sparse().shape == shape[::-1]
    assert sc.reshape(-1).outliers.to_sparse().shape == (sc.size,)


def test_outliers_to_sparse_of_a_standalone_part():
    part = signcut.Outliers(np.array([1, 5]), np.array([2.0, -1.0], np.float16), 1, 12)
    with pytest.raises(ValueError, match="shape"):
        part.to_sparse()
    np.testing.assert_array_equal(part.to_sparse((3, 4)).toarray().ravel()[[1, 5]], [4.0, -2.0])
    with pytest.raises(ValueError, match="out of range"):
        part.to_sparse((2, 2))


# ------------------------------------------------------------------ TensorLy
@pytest.mark.parametrize("shape", SHAPES)
def test_to_cp_matches_tensorly(shape):
    tl = pytest.importorskip("tensorly")
    sc = random_signcut(shape, 7, 2)
    weights, factors = sc.to_cp()
    assert weights.shape == (7,) and [f.shape for f in factors] == [(d, 7) for d in shape]
    assert all(set(np.unique(f)) <= {-1.0, 1.0} for f in factors)
    np.testing.assert_allclose(tl.cp_to_tensor((weights, factors)), sc.expand(), rtol=1e-5,
                               atol=1e-5)
    w64, f64 = sc.to_cp(np.float64)
    assert w64.dtype == np.float64 and f64[0].dtype == np.float64


def test_to_cp_with_no_cut():
    weights, factors = random_signcut((3, 70, 2), 0).to_cp()
    assert weights.shape == (0,) and [f.shape for f in factors] == [(3, 0), (70, 0), (2, 0)]


def test_to_cp_of_tensorized_and_sparse():
    tl = pytest.importorskip("tensorly")
    t = tensorized()[0]
    with pytest.raises(ValueError, match="sparse part"):
        t.to_cp()
    weights, factors = t.to_cp(ignore_sparse=True)
    cuts = SignCut(t.tensor_shape, t.signs, t.coef, tensorize=t.tensorize)
    modes = tl.cp_to_tensor((weights, factors))           # in the modes' layout
    assert modes.shape == t.tensor_shape
    np.testing.assert_allclose(cuts.expand(), np.transpose(modes, np.argsort(t.tensorize["axes"]))
                               .reshape(t.shape), rtol=1e-5, atol=1e-5)
