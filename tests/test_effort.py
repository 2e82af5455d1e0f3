"""Search options of the matrix engine: warm starts, restarts, backfitting, effort presets."""
import numpy as np
import pytest

import signcut
from signcut import _api
from reference import unpack


def _dense_errors(A, r):
    """Exact relative error of every prefix of the cuts, in float64."""
    S = unpack(r.signs[0], A.shape[0]).astype(np.float64)
    T = unpack(r.signs[1], A.shape[1]).astype(np.float64)
    A64 = A.astype(np.float64)
    nrm = np.linalg.norm(A64)
    return np.array([np.linalg.norm(A64 - (S[:k].T * r.coef[:k]) @ T[:k]) / nrm
                     for k in range(1, r.width + 1)])


@pytest.fixture
def A():
    return np.random.default_rng(3).standard_normal((150, 97)).astype(np.float32)


@pytest.mark.parametrize("opts", [dict(effort="fast"), dict(effort="best"),
                                  dict(restarts=2), dict(refine=1), dict(refine=2, block_size=1),
                                  dict(restarts=2, refine=1, n_threads=2)])
def test_error_history_is_exact(A, opts):
    r = signcut.decompose(A, width=140, seed=0, **opts)
    assert r.width == 140
    dense = _dense_errors(A, r)
    assert r.errors[-1] == pytest.approx(dense[-1], abs=1e-6)
    preset = _api.EFFORTS[opts.get("effort", "default")]
    if opts.get("refine", preset["refine"]):
        np.testing.assert_allclose(r.errors, dense, atol=1e-6)   # recomputed exactly
    else:
        np.testing.assert_allclose(r.errors, dense, rtol=2e-4)   # tracked per cut


def test_more_search_lowers_the_error():
    A = np.random.default_rng(0).standard_normal((128, 128)).astype(np.float32)
    plain = signcut.decompose(A, bits_per_entry=8, seed=0)
    assert signcut.decompose(A, bits_per_entry=8, seed=0, restarts=3).rel_error < 0.95 * plain.rel_error
    assert signcut.decompose(A, bits_per_entry=8, seed=0, refine=2).rel_error < 0.995 * plain.rel_error
    best = signcut.decompose(A, bits_per_entry=8, seed=0, effort="best")
    assert best.width == plain.width and best.rel_error < 0.9 * plain.rel_error
    fast = signcut.decompose(A, bits_per_entry=8, seed=0, effort="fast")
    assert fast.width == plain.width and fast.rel_error < 1.3 * plain.rel_error


def test_refined_cuts_never_get_worse():
    # Each backfitted cut starts its search from itself, so the final error cannot grow.
    A = np.random.default_rng(5).standard_normal((64, 80)).astype(np.float32)
    errs = [signcut.decompose(A, width=60, seed=1, refine=p).rel_error for p in range(4)]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(errs, errs[1:]))


@pytest.mark.parametrize("opts", [dict(effort="best"), dict(restarts=3, refine=1)])
def test_search_options_are_deterministic_for_any_thread_count(A, opts):
    r1 = signcut.decompose(A, width=100, seed=7, n_threads=1, **opts)
    r3 = signcut.decompose(A, width=100, seed=7, n_threads=3, **opts)
    for a, b in zip(r1.signs + (r1.coef, r1.errors), r3.signs + (r3.coef, r3.errors)):
        np.testing.assert_array_equal(a, b)


def test_exact_recovery_with_every_effort():
    rng = np.random.default_rng(2)
    s, t = rng.choice([-1.0, 1.0], (2, 40)), rng.choice([-1.0, 1.0], (2, 30))
    A = (3.0 * np.outer(s[0], t[0]) + 1.0 * np.outer(s[1], t[1])).astype(np.float32)
    for effort in ("fast", "default", "best"):
        r = signcut.decompose(A, width=5, seed=0, effort=effort)
        assert r.rel_error < 1e-6


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(effort="max"), ValueError, "effort must be one of"),
    (dict(restarts=0), ValueError, "restarts must be >= 1"),
    (dict(refine=-1), ValueError, "refine must be >= 0"),
    (dict(restarts=1.5), TypeError, "restarts must be an integer"),
])
def test_bad_search_options(A, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        signcut.decompose(A, width=3, **kwargs)


def test_tensors_refuse_matrix_search_options():
    X = np.random.default_rng(0).standard_normal((4, 5, 6)).astype(np.float32)
    for kwargs in (dict(effort="best"), dict(restarts=2), dict(refine=1)):
        with pytest.raises(ValueError, match="apply to matrices"):
            signcut.decompose(X, width=3, **kwargs)
    assert signcut.decompose(X, width=3, effort="default").width == 3
