"""decompose(A, init=previous, ...): continuing a decomposition to a larger budget.

With the seed of the first run, the continuation draws the random starts the longer run would
have drawn (the engine's xoshiro256** stream is advanced past the starts of init's cuts, and
matrices start the first new cut from init's last cut, as the long run does). The tensor
engine then gives the same signs bit for bit, with coefficients and errors equal up to
float32 rounding (the remainder is A minus init's cuts computed at once instead of block by
block). The matrix engine searches through float16 copies of the remainder, scaled at each
block flush: the continuation's copies differ in rounding, so its signs part from the long
run's after a few cuts, at the same quality (checked within 3%)."""
import numpy as np
import pytest

import signcut
from signcut import SignCut
from conftest import gaussian


def assert_same_run(a, b):
    """b continues a prefix of a: the same run for tensors, the same quality for matrices."""
    assert a.width == b.width and a.shape == b.shape
    if len(a.tensor_shape) == 2:
        assert abs(b.rel_error / a.rel_error - 1) <= 0.03, (a.rel_error, b.rel_error)
        return
    for x, y in zip(a.signs, b.signs):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(a.coef, b.coef, rtol=1e-5)
    np.testing.assert_allclose(a.errors, b.errors, rtol=1e-5)


def assert_keeps(init, r):
    """r starts with init's cuts, unchanged."""
    for x, y in zip(init.signs, r.signs):
        np.testing.assert_array_equal(x, y[:init.width])
    np.testing.assert_array_equal(init.coef, r.coef[:init.width])


@pytest.mark.parametrize("shape", [(64, 80), (200, 130), (9, 10, 11), (300,), (5, 6, 7, 8)])
@pytest.mark.parametrize("seed", [0, 7])
def test_truncate_then_continue_retraces_the_long_run(shape, seed):
    A = gaussian(shape, seed=seed + 1)
    full = signcut.decompose(A, width=10, seed=seed)
    again = signcut.decompose(A, init=full.truncate(4), width=10, seed=seed)
    assert_same_run(full, again)
    assert_keeps(full.truncate(4), again)
    assert again.rel_error == pytest.approx(
        np.linalg.norm(A - again.expand()) / np.linalg.norm(A), rel=1e-4)


def test_continue_across_blocks_and_twice():
    A = gaussian((97, 131), seed=3)
    full = signcut.decompose(A, width=150, seed=11)
    mid = signcut.decompose(A, init=full.truncate(37), width=100, seed=11)
    end = signcut.decompose(A, init=mid, width=150, seed=11)
    assert_same_run(full, end)


def test_other_seed_continues_as_well():
    """Another random stream: not the same bits, but the same quality (within 3%)."""
    A = gaussian((120, 90), seed=4)
    full = signcut.decompose(A, width=60, seed=1)
    other = signcut.decompose(A, init=full.truncate(20), width=60, seed=2)
    fresh = signcut.decompose(A, init=full.truncate(20), width=60)
    assert not np.array_equal(other.signs[0], full.signs[0])
    for r in (other, fresh):
        np.testing.assert_array_equal(r.signs[0][:20], full.signs[0][:20])
        assert abs(r.rel_error / full.rel_error - 1) <= 0.03


def test_truncate_zero_is_a_fresh_run():
    A = gaussian((50, 70), seed=2)
    full = signcut.decompose(A, width=12, seed=3)
    assert_same_run(full, signcut.decompose(A, init=full.truncate(0), width=12, seed=3))


@pytest.mark.parametrize("budget", [{"width": 30}, {"bits_per_entry": 5.0}, {"ratio": 0.1},
                                    {"rtol": 0.7}])
def test_every_budget_counts_the_total(budget):
    A = gaussian((90, 110), seed=5)
    full = signcut.decompose(A, seed=9, **budget)
    init = full.truncate(full.width // 3)
    again = signcut.decompose(A, init=init, seed=9, **budget)
    assert again.stopped_by == full.stopped_by
    if "rtol" in budget:
        # A matrix continues to the same quality, not the same bits: the cut that crosses the
        # target may come one earlier or later.
        assert again.rel_error <= budget["rtol"] < again.errors[-2]
        assert abs(again.width - full.width) <= 1
        return
    assert_same_run(full, again)


def test_budget_already_met():
    A = gaussian((40, 60), seed=6)
    r = signcut.decompose(A, width=10, seed=0)
    same = signcut.decompose(A, init=r, width=10, seed=0)
    assert same.width == 10 and same.stopped_by == "width"
    done = signcut.decompose(A, init=r, rtol=0.99, seed=0)
    assert done.width == 10 and done.stopped_by == "rtol"
    np.testing.assert_array_equal(done.coef, r.coef)
    with pytest.raises(ValueError, match=r"already has 10 cuts.*truncate\(8\)"):
        signcut.decompose(A, init=r, width=8)
    with pytest.raises(ValueError, match="already has 10 cuts"):
        signcut.decompose(A, init=r, bits_per_entry=0.5)


def test_max_seconds_and_callback_count_the_total():
    A = gaussian((60, 50), seed=7)
    r = signcut.decompose(A, width=5, seed=0)
    seen = []
    more = signcut.decompose(A, init=r, width=9, seed=0,
                             callback=lambda k, e: seen.append((k, e)))
    assert [k for k, _ in seen] == [6, 7, 8, 9]
    np.testing.assert_allclose([e for _, e in seen], more.errors[5:], rtol=1e-4)
    timed = signcut.decompose(A, init=r, max_seconds=0.05, seed=0)
    assert timed.width >= 5 and timed.stopped_by in ("max_seconds", "width")


def test_continue_with_outliers():
    rng = np.random.default_rng(8)
    A = gaussian((80, 100), seed=8)
    A.reshape(-1)[rng.choice(A.size, 16, replace=False)] += 40
    full = signcut.decompose(A, bits_per_entry=6, seed=4, outliers=16 / A.size)
    init = full.truncate(50)
    for q in (None, 16 / A.size, "auto"):
        again = signcut.decompose(A, init=init, bits_per_entry=6, seed=4, outliers=q)
        assert_same_run(full, again)
        assert again.outliers.equals(full.outliers)
    with pytest.raises(ValueError, match="init keeps 16 outliers but outliers=0.01 asks for 80"):
        signcut.decompose(A, init=init, width=60, outliers=0.01)
    plain = signcut.decompose(A, width=5, seed=0)
    with pytest.raises(ValueError, match="init keeps 0 outliers"):
        signcut.decompose(A, init=plain, width=9, outliers=0.01)


def test_continue_a_tensorized_result():
    A = gaussian((12, 20), seed=9)
    kw = dict(shape=(3, 4, 20), axes=(2, 0, 1))
    full = signcut.decompose(A, width=15, seed=2, **kw)
    assert_same_run(full, signcut.decompose(A, init=full.truncate(6), width=15, seed=2))
    assert_same_run(full, signcut.decompose(A, init=full.truncate(6), width=15, seed=2, **kw))
    with pytest.raises(ValueError, match="tensorized as"):
        signcut.decompose(A, init=full.truncate(6), width=15, shape=(3, 4, 20))
    plain = signcut.decompose(A, width=3, seed=0)
    with pytest.raises(ValueError, match="tensorized as None"):
        signcut.decompose(A, init=plain, width=5, **kw)


@pytest.mark.parametrize("init,exc,match", [
    ("x", TypeError, "init must be a SignCut"),
    (SignCut((3, 4), [np.zeros((0, 1), np.uint64)] * 2, []), ValueError, "shape"),
])
def test_bad_init(init, exc, match):
    with pytest.raises(exc, match=match):
        signcut.decompose(gaussian((10, 20)), init=init, width=3)


def test_init_from_another_array():
    r = signcut.decompose(gaussian((10, 20), seed=1), width=3, seed=0)
    with pytest.raises(ValueError, match="another array"):
        signcut.decompose(gaussian((10, 20), seed=2), init=r, width=5)
