"""Search options of the matrix engine: warm starts, restarts, backfitting, effort presets."""
import numpy as np
import pytest

import signcut
from signcut import _api
import reference
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


# ------------------------------------------------------------------ where searches start
def _onehot(m, n, seed=0):
    A = np.zeros((m, n))
    A[np.arange(m), np.random.default_rng(seed).integers(0, n, m)] = 1.0
    return A


def _blockdiag(n, b, seed=0):
    A = np.zeros((n, n))
    values = np.random.default_rng(seed).standard_normal(n // b)
    for i, v in enumerate(values):
        A[i * b:(i + 1) * b, i * b:(i + 1) * b] = v
    return A


def _no_worse_than_plain(A, width, seeds, **opts):
    """(ours, bound): the mean error over seeds and the most it may be, 3% above the plain
    greedy's mean (tests/reference.py) plus two standard errors of the difference: seeds
    scatter the error of small or structured matrices by several percent."""
    plain = np.array([reference.greedy(A, width, seed=s)[-1] for s in seeds])
    ours = np.array([signcut.decompose(A, width=width, seed=s, **opts).rel_error
                     for s in seeds])
    noise = 2 * np.sqrt((plain.var(ddof=1) + ours.var(ddof=1)) / len(seeds))
    return ours.mean(), 1.03 * plain.mean() + noise + 1e-6


STRUCTURED = {
    "identity": (np.eye(64), 300),
    "permutation": (np.eye(64)[np.random.default_rng(1).permutation(64)], 300),
    "diagonal": (np.diag(np.arange(1.0, 33.0)), 300),
    "one-hot rows": (_onehot(200, 50), 300),
    "rectangular identity": (np.eye(64, 128), 300),
    "block diagonal": (_blockdiag(60, 15), 100),
}


@pytest.mark.parametrize("case", sorted(STRUCTURED))
def test_structured_matrices_reach_the_plain_greedy(case):
    """Warm starts alone stalled on these (eye(64): 97.7% error after 1000 cuts, against 1e-6
    for the plain greedy): mostly-zero matrices start every cut from random signs."""
    A, width = STRUCTURED[case]
    ours, bound = _no_worse_than_plain(A, width, range(6))
    assert ours <= bound


ASPECTS = [(128, 128), (64, 256), (256, 64), (32, 512), (512, 32), (16, 1024), (1024, 16),
           (8, 2000), (2000, 8), (4, 4000), (4000, 4)]


@pytest.mark.parametrize("effort", ["fast", "default", "best"])
def test_no_aspect_ratio_is_worse_than_the_plain_greedy(effort):
    """Gaussian matrices from square to 1:1000, both ways, about 3 bits per entry (warm
    starts were up to twice as bad on elongated ones)."""
    rng = np.random.default_rng(4)
    for m, n in ASPECTS:
        A = rng.standard_normal((m, n))
        ours, bound = _no_worse_than_plain(A, max(24, int(3 * m * n / (m + n + 32))), range(6),
                                           effort=effort)
        assert ours <= bound, (m, n)
