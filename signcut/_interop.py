"""A SignCut for SciPy and TensorLy: a LinearOperator whose products are the C products, and
the cuts in TensorLy's CP layout."""
import numpy as np
from scipy.sparse.linalg import LinearOperator

from signcut import _array


def _matrix(sc, what):
    if sc.ndim != 2 or sc.tensorize:
        raise ValueError(f"{what} needs a matrix whose modes are its axes; this SignCut has "
                         f"shape {sc.shape}" + (" and is tensorized (recompress it without "
                                                "shape=/axes= first)" if sc.tensorize else ""))


def _real_or_complex(product, x):
    """``product(x)``, for a complex ``x`` as its real and imaginary parts."""
    if np.iscomplexobj(x):
        return product(np.ascontiguousarray(x.real)) + 1j * product(np.ascontiguousarray(x.imag))
    return product(x)


class SignCutOperator(LinearOperator):
    """``scipy.sparse.linalg.LinearOperator`` of an order-2 SignCut: ``matvec``, ``rmatvec``,
    ``matmat`` and ``rmatmat`` are the C lookup-table products of the signs (float32
    arithmetic; the answers in ``dtype``), the adjoint is ``rmatvec``. Nothing is expanded."""

    def __init__(self, sc, dtype=None):
        _matrix(sc, "a LinearOperator")
        super().__init__(dtype=np.dtype(sc.dtype if dtype is None else dtype), shape=sc.shape)
        self.signcut = sc

    def _out(self, y):
        return y.astype(np.result_type(self.dtype, y.dtype), copy=False)

    def _matvec(self, x):
        return self._out(_real_or_complex(lambda v: _array.matmul(self.signcut, v),
                                          np.asarray(x).reshape(-1)))

    def _rmatvec(self, x):
        return self._out(_real_or_complex(lambda v: _array.rmatmul(self.signcut, v),
                                          np.asarray(x).reshape(-1)))

    def _matmat(self, X):
        return self._out(_real_or_complex(lambda v: _array.matmul(self.signcut, v), np.asarray(X)))

    def _rmatmat(self, X):
        return self._out(_real_or_complex(lambda v: _array.rmatmul(self.signcut, v.T).T,
                                          np.asarray(X)))


def to_cp(sc, dtype=np.float32, ignore_sparse=False):
    """``(weights, factors)`` in TensorLy's CP layout (see ``SignCut.to_cp``)."""
    if sc.outliers is not None and len(sc.outliers) and not ignore_sparse:
        raise ValueError(f"this SignCut has a sparse part ({len(sc.outliers)} entries), which a "
                         "CP decomposition cannot hold: pass ignore_sparse=True for the cuts "
                         "alone (sc.outliers.to_sparse() gives the rest)")
    from signcut._result import unpack_signs
    weights = sc.coef.astype(dtype)
    factors = [np.ascontiguousarray(unpack_signs(bits, d).T, dtype=dtype)
               for bits, d in zip(sc.signs, sc.tensor_shape)]
    for f, scale in zip(factors, sc.scales):
        if scale is not None:
            f *= scale.astype(dtype)[:, None]
    return weights, factors
