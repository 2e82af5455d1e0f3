"""Reliability: extreme inputs, determinism and threads, resources, and a fuzzer for
the file reader.

Each test states the behaviour it pins down. The tests after "bugs found and fixed" pin bugs
found while writing this file (overflow near float32's maximum, error bookkeeping near a zero
remainder, loader errors escaping as other exceptions).
"""
import gc
import json
import os
import random
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

import signcut
from signcut import FormatError, SignCut
from signcut._result import words
from conftest import subprocess_env

F32_MAX = float(np.finfo(np.float32).max)


def gaussian(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def true_error(A, result):
    """||A - expand|| / ||A|| computed in float64 from the float32 expansion."""
    A = np.asarray(A, dtype=np.float64)
    return float(np.linalg.norm(A - result.expand().astype(np.float64)) / np.linalg.norm(A))


def assert_finite(result):
    assert np.isfinite(result.coef).all(), result.coef
    assert np.isfinite(result.errors).all(), result.errors
    assert np.isfinite(result.expand()).all()
    assert result.norm is not None and np.isfinite(result.norm)


def assert_bit_identical(a, b):
    assert a.shape == b.shape and a.width == b.width and a.stopped_by == b.stopped_by
    for x, y in zip(a.signs, b.signs):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.coef.view(np.uint32), b.coef.view(np.uint32))
    np.testing.assert_array_equal(a.errors.view(np.uint64), b.errors.view(np.uint64))
    assert a.norm == b.norm


# ================================================================== 1. extreme inputs
@pytest.mark.parametrize("A", [
    np.zeros((3, 4, 5)), np.zeros((2, 3, 4, 5), np.float32), np.zeros((1, 1)), np.zeros((1, 1, 5)),
    np.zeros(7), np.zeros((6, 9), np.int8), np.zeros((4, 70), bool), np.full((5, 5), -0.0),
], ids=lambda a: f"{a.dtype}{a.shape}")
def test_all_zero_input_gives_zero_cuts(A):
    """All-zero arrays (any order, dtype, -0.0 included): no cut, rel_error 0 (not 1),
    stopped because the remainder is exactly zero, expand() is zeros of the right shape."""
    r = signcut.decompose(A, width=5, seed=0)
    assert r.width == 0 and r.coef.shape == (0,) and r.errors.shape == (0,)
    assert r.rel_error == 0.0 and r.norm == 0.0
    assert r.stopped_by == "exhausted"
    out = r.expand()
    assert out.shape == A.shape and out.dtype == np.float32
    assert not out.any()
    assert all(b.shape == (0, words(d)) for b, d in zip(r.signs, r.tensor_shape))


@pytest.mark.parametrize("shape,value,dtype,exact", [
    ((7, 9), 3.5, np.float64, True), ((300, 300), 3.5, np.float32, True),
    ((2, 5000), -3.5, np.float32, True), ((3, 4, 5), -2.0, np.float32, True),
    ((2, 3, 4, 5), 7, np.int16, True), ((6, 6), 1, bool, True), ((40, 30), 2.0 ** -60, np.float64, True),
    ((1, 13), 0.1, np.float32, False), ((13, 1), 0.1, np.float32, False), ((7, 9), 0.1, np.float32, False),
    ((3, 4, 5), 0.1, np.float32, False),
])
def test_constant_is_recovered_by_one_cut(shape, value, dtype, exact):
    """A constant array is one cut: after the first cut the reported and the true error are
    < 1e-6 and the coefficient is the constant (to 1e-6). When the float32 arithmetic is exact
    (3.5, -2, 7, True, 2**-60) the remainder is exactly zero and it stops there ("exhausted");
    for 0.1 the float32 rounding leaves a remainder, so further (tiny) cuts may follow."""
    A = np.full(shape, value, dtype)
    r = signcut.decompose(A, width=5, seed=0)
    first = r.truncate(1)
    assert r.errors[0] < 1e-6 and true_error(A, first) < 1e-6
    np.testing.assert_allclose(abs(float(r.coef[0])), abs(float(value)), rtol=1e-6)
    assert r.rel_error < 1e-6 and true_error(A, r) < 1e-6
    if exact:
        assert r.width == 1 and r.stopped_by == "exhausted" and r.rel_error == 0.0
        np.testing.assert_array_equal(r.expand(), A.astype(np.float32))
    else:
        assert r.stopped_by in ("width", "exhausted")


@pytest.mark.parametrize("shape,where,dtype", [
    ((20, 30), (3, 4), np.float32), ((20, 30), (0, 29), np.float64), ((4, 5, 6), (1, 2, 3), np.float32),
    ((1, 64), (0, 63), np.float32),
])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_one_huge_entry_among_small_ones(shape, where, dtype, sign):
    """One entry of +-1e30 among N(0,1) entries: nothing overflows (coef, errors, norm and
    expand() are finite), the error history does not increase, and rel_error is the true
    error of the float32 expansion (to 1e-5)."""
    A = gaussian(shape, seed=3, dtype=dtype)
    A[where] = sign * 1e30
    r = signcut.decompose(A, width=20, seed=0)
    assert r.width == 20
    assert_finite(r)
    assert np.all(np.diff(r.errors) <= 1e-6), r.errors
    assert 0.0 < r.rel_error <= 1.0
    assert r.rel_error == pytest.approx(true_error(A, r), abs=1e-5)


def test_subnormal_float32_entries():
    """Arrays made only of float32 subnormals (1e-40) are refused with a ValueError that says
    float32 (the coefficients of their cuts would underflow, so the reported error would be a
    lie). Subnormal entries next to normal ones are fine: finite results, exact recovery of a
    sign pattern, a non-increasing history."""
    S = np.full((10, 12), 1e-40, np.float32)
    S[::2] *= -1
    assert np.all(np.abs(S) < np.finfo(np.float32).tiny)          # really subnormal
    for A in (S, S.reshape(2, 5, 12), np.array([[1e-45, 0.0]], np.float32)):
        with pytest.raises(ValueError, match="float32"):
            signcut.decompose(A, width=5, seed=0)

    G = gaussian((10, 12), seed=1) * np.float32(1e-40)
    G[0, 0] = 1e-30                                                 # one normal entry
    r = signcut.decompose(G, width=30, seed=0)
    assert_finite(r)
    assert r.norm > 0 and 0.0 <= r.rel_error < 1.0
    assert np.all(np.diff(r.errors) <= 1e-4)
    assert r.rel_error == pytest.approx(true_error(G, r), abs=1e-4)
    P = S.copy()
    P[0, 0] = -np.finfo(np.float32).tiny * 4                        # rank one, one normal entry
    P[0] = P[0, 0]
    r = signcut.decompose(P, width=3, seed=0)
    assert_finite(r)


@pytest.mark.parametrize("A", [
    np.array([[1.0, 4e38], [0.0, 1.0]]), np.array([[-1e39, 1.0]]), np.full((2, 3, 4), 1e300),
    np.array([1e-3] * 10 + [-3.5e38]),
], ids=["one-big", "negative", "order3", "1d"])
def test_float64_beyond_float32_range_is_refused(A):
    """float64 values beyond float32's range (even a single one, either sign, any order):
    ValueError that says float32, before any work."""
    with pytest.raises(ValueError, match="float32"):
        signcut.decompose(A, width=2)


@pytest.mark.parametrize("shape", [(10, 12), (3, 4, 5)])
def test_float64_below_float32_range(shape):
    """float64 values that all lie below float32's normal range (1e-50) are refused with a
    ValueError that says float32 (their approximation could not be stored). When the largest
    value is representable, tiny entries are kept as well as float32 allows: the engine works
    on the array scaled by a power of two."""
    A = gaussian(shape, seed=2, dtype=np.float64) * 1e-50
    with pytest.raises(ValueError, match="float32"):
        signcut.decompose(A, width=5, seed=0)
    B = A.copy()
    B.flat[0] = 1.0                                   # one representable entry
    r = signcut.decompose(B, width=5, seed=0)
    assert r.width >= 1 and r.norm == pytest.approx(1.0)
    assert_finite(r)


@pytest.mark.parametrize("shape", [(1, 7), (7, 1), (1, 1), (1, 1, 1), (1, 1, 5), (5,), (2, 1, 3)])
@pytest.mark.parametrize("block_size", [1, 64])
def test_degenerate_shapes_with_excess_width(shape, block_size):
    """Shapes with unit dimensions and width 10x the number of entries: no error; it stops
    on the width or when the remainder is exactly zero; the reported history never increases
    by more than 1e-3 (strictly never with block_size=1) and ends near 0, as does the true error.
    1x1 and 1x1x1 take exactly one cut and are recovered exactly."""
    A = gaussian(shape, seed=5)
    r = signcut.decompose(A, width=10 * A.size, seed=0, block_size=block_size)
    assert r.stopped_by in ("width", "exhausted")
    assert 1 <= r.width <= 10 * A.size
    assert r.stopped_by == "exhausted" or r.width == 10 * A.size
    assert_finite(r)
    tol = 1e-12 if block_size == 1 or A.ndim != 2 else 1e-3
    assert np.all(np.diff(r.errors) <= tol), np.diff(r.errors).max()
    assert r.rel_error < 1e-3
    assert true_error(A, r) < 1e-5
    if A.size == 1:
        assert r.width == 1 and r.stopped_by == "exhausted"
        np.testing.assert_array_equal(r.expand(), A)


@pytest.mark.parametrize("shape,seed", [((6, 5), 0), ((6, 5), 1), ((3, 4), 2), ((4, 4, 2), 3)])
def test_width_ten_times_the_entries(shape, seed):
    """Width 10x the number of entries (an over-complete budget): finishes without error,
    stopped_by is "width" or "exhausted", the history stays non-increasing up to the known
    ~2e-4 drift of the matrix engine's bookkeeping (see test_error_bookkeeping_*), and both
    the reported and the true error end near 0."""
    A = gaussian(shape, seed=seed, dtype=np.float64)
    r = signcut.decompose(A, width=10 * A.size, seed=0)
    assert r.stopped_by in ("width", "exhausted")
    assert np.all(np.diff(r.errors) <= 1e-3)
    assert r.rel_error < 1e-4 and true_error(A, r) < 1e-5
    strict = signcut.decompose(A, width=10 * A.size, seed=0, block_size=1)
    assert np.all(np.diff(strict.errors) <= 1e-12)
    assert true_error(A, strict) < 1e-5


@pytest.mark.parametrize("dtype,low,high", [(np.int8, -128, 128), (np.uint8, 0, 256), (bool, 0, 2)])
def test_small_integer_and_bool_inputs(dtype, low, high):
    """int8 (extremes -128..127 included), uint8 and bool: decomposed as their float32 values
    (bit-identical to passing the float32 cast), orig_dtype kept, ratio measured against 1 byte
    per entry, and the error history is consistent with the expansion."""
    A = np.random.default_rng(4).integers(low, high, size=(17, 23)).astype(dtype)
    A[0, 0], A[-1, -1] = low, high - 1
    r = signcut.decompose(A, width=25, seed=1)
    ref = signcut.decompose(A.astype(np.float32), width=25, seed=1)
    assert_bit_identical(r, ref)
    assert r.orig_dtype == np.dtype(dtype)
    assert r.ratio == pytest.approx(r.nbytes / A.size)
    assert np.all(np.diff(r.errors) <= 1e-6)
    assert r.rel_error == pytest.approx(true_error(A, r), abs=1e-5)
    by_ratio = signcut.decompose(A, ratio=0.5, seed=1)
    assert by_ratio.nbytes <= 0.5 * A.size
    A3 = A[:16, :18].reshape(4, 4, 18)
    r3 = signcut.decompose(A3, width=10, seed=0)
    assert r3.orig_dtype == np.dtype(dtype) and r3.rel_error == pytest.approx(true_error(A3, r3), abs=1e-5)


@pytest.mark.parametrize("shape", [(2, 5000), (5000, 2), (3, 4097), (4097, 1), (1, 6000)])
def test_very_wide_and_very_tall(shape):
    """Very wide and very tall matrices: the result has the right shape and packing, the
    history decreases and matches the expansion, and a rank-one sign matrix times a constant
    is recovered by one cut."""
    A = gaussian(shape, seed=6)
    r = signcut.decompose(A, width=30, seed=0)
    assert r.shape == shape and r.width == 30
    assert r.signs[0].shape == (30, words(shape[0])) and r.signs[1].shape == (30, words(shape[1]))
    assert np.all(np.diff(r.errors) <= 1e-6)
    assert r.rel_error == pytest.approx(true_error(A, r), abs=1e-5)
    rng = np.random.default_rng(7)
    s, t = rng.choice([-1.0, 1.0], shape[0]), rng.choice([-1.0, 1.0], shape[1])
    B = (2.5 * np.outer(s, t)).astype(np.float32)
    rb = signcut.decompose(B, width=5, seed=0)
    assert rb.width == 1 and rb.stopped_by == "exhausted"
    np.testing.assert_array_equal(rb.expand(), B)


# ------------------------------------------------------------------ bugs found and fixed
@pytest.mark.parametrize("A", [np.full((3, 3), F32_MAX), np.array([[F32_MAX, -F32_MAX], [F32_MAX, 1.0]]),
                               np.full((2, 2, 2), F32_MAX), np.full((2, 3), 2.0 ** 127, np.float32)],
                         ids=["matrix", "mixed", "order3", "2^127"])
def test_values_near_float32_max_are_refused(A):
    """float32 inputs within a factor 4 of float32's maximum are refused (ValueError that says
    float32): the float32 sums of cuts that approximate them could overflow. 2**126 is taken."""
    with pytest.raises(ValueError, match="float32"):
        signcut.decompose(A, width=4, seed=0)
    r = signcut.decompose(np.full((3, 3), 2.0 ** 126, np.float32), width=4, seed=0)
    assert_finite(r) and r.rel_error < 1e-6


@pytest.mark.parametrize("shape,value", [((2, 5000), 0.1), ((1000, 1000), 0.1)])
def test_bug_error_bookkeeping_of_near_constant_matrix(shape, value):
    A = np.full(shape, value, np.float32)
    r = signcut.decompose(A, width=3, seed=0)
    truth = [true_error(A, r.truncate(k)) for k in range(1, r.width + 1)]
    np.testing.assert_allclose(r.errors, truth, rtol=0.1, atol=1e-6)
    assert np.all(np.diff(r.errors) <= 1e-6)


def test_bug_error_history_jumps_at_block_flush():
    A = np.random.default_rng(1).standard_normal((6, 5))
    r = signcut.decompose(A, width=300, seed=0)
    assert np.all(np.diff(r.errors) <= 1e-4), np.diff(r.errors).max()


# ================================================================== 2. determinism, threads
@pytest.mark.parametrize("A", [gaussian((90, 70), seed=8), gaussian((6, 7, 8), seed=8),
                               np.where(gaussian((40, 30)) > 2, 1e30, gaussian((40, 30), 1))],
                         ids=["matrix", "order3", "spiky"])
def test_same_seed_is_bit_identical_across_runs(A):
    """The same seed gives the same bits (signs, coef bit patterns, errors, stopped_by) on
    every run, also for other n_threads; another seed gives other signs."""
    runs = [signcut.decompose(A, width=25, seed=123, n_threads=nt) for nt in (None, None, 1, 2)]
    for r in runs[1:]:
        assert_bit_identical(r, runs[0])
    other = signcut.decompose(A, width=25, seed=124)
    assert not all(np.array_equal(x, y) for x, y in zip(other.signs, runs[0].signs))


def _run_in_threads(jobs):
    """Run ``jobs`` (callables) in as many threads, released together; results in order."""
    barrier = threading.Barrier(len(jobs))
    results, errors = [None] * len(jobs), []

    def work(i):
        try:
            barrier.wait()
            results[i] = jobs[i]()
        except BaseException as exc:          # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a decompose thread hangs"
    assert not errors, errors
    return results


def test_threads_each_on_its_own_array_match_serial():
    """decompose from 4 Python threads at once, each on its own array (matrices and a
    tensor, different n_threads), gives bit-identical results to serial calls."""
    arrays = [gaussian((150, 120), seed=9), gaussian((80, 200), seed=10),
              gaussian((10, 11, 12), seed=11), gaussian((257, 65), seed=12)]
    kwargs = [dict(width=40, seed=1), dict(width=40, seed=2, n_threads=1),
              dict(width=30, seed=3), dict(width=40, seed=4, block_size=7, n_threads=2)]
    serial = [signcut.decompose(A, **kw) for A, kw in zip(arrays, kwargs)]
    for _ in range(3):
        par = _run_in_threads([lambda A=A, kw=kw: signcut.decompose(A, **kw)
                               for A, kw in zip(arrays, kwargs)])
        for p, s in zip(par, serial):
            assert_bit_identical(p, s)


def test_threads_on_the_same_array_match_serial():
    """4 Python threads decomposing the SAME array (read-only, shared) at once, with the
    same and with different seeds: bit-identical to serial calls, and the input unchanged."""
    A = gaussian((160, 140), seed=13)
    A.flags.writeable = False
    keep = A.copy()
    seeds = [5, 5, 6, 7]
    serial = {s: signcut.decompose(A, width=40, seed=s) for s in set(seeds)}
    for _ in range(3):
        par = _run_in_threads([lambda s=s: signcut.decompose(A, width=40, seed=s) for s in seeds])
        for p, s in zip(par, seeds):
            assert_bit_identical(p, serial[s])
    np.testing.assert_array_equal(A, keep)


# ================================================================== 3. resources
def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_no_memory_growth_over_many_decompositions():
    """1000 small decompositions (matrices, tensors, with expand/truncate/indexing) leave
    resident memory within 1 MB of where it was after a warm-up: each call works on a 16 KB
    float32 copy, so leaking any per-call buffer would show up as >= 16 MB."""
    A = gaussian((64, 64), seed=15)
    B = gaussian((16, 16, 16), seed=16)

    def once(i):
        r = signcut.decompose(A if i % 2 else B, width=6, seed=i, block_size=1 + i % 64)
        r.expand()
        r.truncate(3)
        r[1]
        return r.width
    for i in range(200):
        once(i)
    gc.collect()
    before = _resident_bytes()
    total = sum(once(i) for i in range(1000))
    gc.collect()
    grown = _resident_bytes() - before
    assert total == 6000
    assert grown < 1 << 20, f"resident memory grew by {grown / 1024:.0f} KB"


# ================================================================== 4. fuzzing the reader
def _split(raw):
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join(header, data):
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    """Valid files of orders 1 to 5, widths 0 to 70, single and mapping, history or not,
    tensorized or not (raw bytes)."""
    rng = np.random.default_rng(17)
    d = tmp_path_factory.mktemp("seeds")
    objs = [
        signcut.decompose(gaussian((7, 9), seed=1), width=5, seed=0),
        {"m": signcut.decompose(gaussian((5, 3), seed=2), width=3, seed=0),
         "t": signcut.decompose(gaussian((9, 2, 7), seed=3), width=2, seed=0),
         "z": signcut.decompose(np.zeros(4), width=1)},
        signcut.decompose(gaussian((2, 3, 4, 5), seed=4), width=3, seed=0),
        signcut.decompose(gaussian((1,), seed=5), width=1, seed=0),
        signcut.decompose(gaussian((8, 16), seed=6), width=6, seed=0, shape=(4, 2, 4, 4),
                          axes=(0, 2, 1, 3)),
        SignCut((65, 3), [rng.integers(0, 2, (70, 2), dtype=np.uint64),
                          rng.integers(0, 8, (70, 1), dtype=np.uint64)], rng.random(70)),
        signcut.decompose(gaussian((2, 2, 2, 2, 3), seed=7), width=4, seed=0),
    ]
    raws = []
    for i, obj in enumerate(objs):
        path = d / f"s{i}.safetensors"
        signcut.save(path, obj, history=bool(i % 2))
        raws.append(path.read_bytes())
        signcut.load(path)                               # every seed file is valid
    return raws


HUGE = [2**40, 2**63, 2**64 + 1, 10**400, -(2**40)]
HOSTILE = [0, 1, 2, 3, 7, 8, -1, 63, 64, 65, 255, 2**31, 2**32, 1.5, 3.0, -0.0, 1e308,
           float("inf"), float("nan"), True, False, None, "", "3", "float32", "F32", "U8", "O",
           "V8", "i4,f8", [], [0], [1], [3, 5], [2**40, 2**40], [1] * 33, [[1]], {}, {"a": 1}] + HUGE


def _mutate_header(rnd, raw):
    """Parse the header, replace one value deep inside (metadata entries, tensor infos,
    shapes, widths, dtypes, offsets) by a hostile one, write it back."""
    header, data = _split(raw)
    meta = header["__metadata__"]
    decomps = json.loads(meta["decompositions"])
    name = rnd.choice(list(decomps))
    entry = decomps[name]
    tensors = [k for k in header if k != "__metadata__"]
    value = rnd.choice(HOSTILE)
    where = rnd.randrange(8)
    path = ""
    if where == 0:                                            # a key of the entry
        key = rnd.choice(["shape", "width", "orig_dtype", "norm", "rel_error", "history",
                          "tensorize", "extra"])
        path = key
        if key == "tensorize" and rnd.random() < 0.7:
            value = {"shape": rnd.choice([[value], [2, value], value, list(entry["shape"])]),
                     "axes": rnd.choice([[value, 0], list(range(len(entry["shape"]))), value])}
        entry[key] = value
    elif where == 1:                                          # one dimension of the shape
        path = "shape[i]"
        entry["shape"][rnd.randrange(len(entry["shape"]))] = value
    elif where == 2:                                          # width / shape made huge
        path = "huge"
        if rnd.random() < 0.5:
            entry["width"] = rnd.choice(HUGE)
        else:
            entry["shape"] = [rnd.choice(HUGE) for _ in entry["shape"]]
    elif where == 3 and tensors:                              # a key of a tensor info
        t = rnd.choice(tensors)
        key = rnd.choice(["dtype", "shape", "data_offsets"])
        path = f"tensor.{key}"
        header[t][key] = value
    elif where == 4 and tensors:                              # one offset / length
        t = rnd.choice(tensors)
        key = rnd.choice(["shape", "data_offsets"])
        path = f"tensor.{key}[i]"
        header[t][key][rnd.randrange(len(header[t][key]))] = rnd.choice(HOSTILE + HUGE)
    elif where == 5:                                          # a metadata string
        key = rnd.choice(["format", "format_version", "container", "decompositions", "signs"])
        path = f"meta.{key}"
        meta[key] = rnd.choice(["", "1", "2", "single", "mapping", "signcut", "{}", "[]",
                                json.dumps(decomps)[:rnd.randrange(1, 40)], str(value)])
    elif where == 6 and tensors:                              # drop or add a tensor
        path = "tensors"
        if rnd.random() < 0.5:
            del header[rnd.choice(tensors)]
        else:
            header[f"{name}/signs.{rnd.randrange(40)}"] = {"dtype": "U8", "shape": [1],
                                                          "data_offsets": [0, 1]}
    else:                                                     # width and tensors consistent, data short
        path = "consistent"
        entry["width"] = entry["width"] + rnd.randrange(1, 1000)
        offset = 0
        for t in sorted(tensors):
            n = header[t]["data_offsets"][1] - header[t]["data_offsets"][0]
            n = n * rnd.randrange(1, 300)
            header[t]["shape"] = [n // {"U8": 1, "F32": 4, "F64": 8}[header[t]["dtype"]]]
            header[t]["data_offsets"] = [offset, offset + n]
            offset += n
    if where != 5 or meta.get("decompositions") == json.dumps(decomps):
        meta["decompositions"] = json.dumps(decomps)
    return _join(header, data), path, value


def _check_loaded(out):
    """A successful load is a consistent SignCut (or a dict of them)."""
    assert isinstance(out, (SignCut, dict))
    for item in (out.values() if isinstance(out, dict) else [out]):
        assert isinstance(item, SignCut)
        w = item.width
        assert item.coef.shape == (w,) and item.coef.dtype == np.float32
        assert item.errors.shape == (w,) and item.errors.dtype == np.float64
        assert len(item.signs) == len(item.tensor_shape) >= 1
        for bits, d in zip(item.signs, item.tensor_shape):
            assert bits.dtype == np.uint64 and bits.shape == (w, words(d))
            if d % 64 and w:
                assert not (bits[:, -1] >> np.uint64(d % 64)).any()
        assert int(np.prod(item.shape, dtype=object)) == int(np.prod(item.tensor_shape, dtype=object))
        assert item.nbytes >= 0 and repr(item)


FUZZ_CASES = 10_000


@pytest.mark.fuzz
def test_fuzz_loader(seed_files, tmp_path):
    """10,000 corrupted files (random truncations, byte flips anywhere or in the header,
    header length fields, appended garbage, edited header JSON values: shapes, widths, dtypes,
    offsets, huge dims up to 10**400): every failure is signcut.FormatError, never another
    exception; every truncation and every file with appended bytes fails; a file that loads is a
    consistent SignCut whose sign arrays match its shape."""
    rnd = random.Random(20261126)
    path = tmp_path / "fuzz.safetensors"
    counts = {"cases": 0, "loaded": 0, "format_error": 0}
    unexpected = []
    t0 = time.perf_counter()
    while counts["cases"] < FUZZ_CASES:
        raw = rnd.choice(seed_files)
        kind = rnd.randrange(7)
        must_fail, desc = False, ""
        if kind == 0:                                            # truncation
            cut = rnd.randrange(len(raw))
            data, must_fail, desc = raw[:cut], True, f"truncate {cut}"
        elif kind in (1, 2):                                     # flipped bytes
            buf = bytearray(raw)
            n = int.from_bytes(raw[:8], "little")
            limit = len(buf) if kind == 1 else 8 + n
            for _ in range(rnd.randint(1, 4)):
                buf[rnd.randrange(limit)] ^= rnd.randint(1, 255)
            data, desc = bytes(buf), "flip"
        elif kind == 3:                                          # header length field
            value = rnd.choice([0, 1, 2, 7, 2**40, 2**64 - 1, rnd.randrange(len(raw) + 16)])
            data, desc = value.to_bytes(8, "little") + raw[8:], f"length {value}"
        elif kind == 4:                                          # appended garbage
            data = raw + bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
            must_fail, desc = True, "append"
        else:                                                    # edited header JSON
            data, where, value = _mutate_header(rnd, raw)
            desc = f"edit {where}={value!r:.60}"
            if rnd.random() < 0.2:
                data = data[:rnd.randrange(len(data))]
                must_fail = True
        counts["cases"] += 1
        path.write_bytes(data)
        try:
            out = signcut.load(path)
        except FormatError:
            counts["format_error"] += 1
            continue
        except Exception as exc:                                 # noqa: BLE001 - the finding
            unexpected.append(f"{desc}: {type(exc).__name__}: {exc}"[:300])
            continue
        counts["loaded"] += 1
        if must_fail:
            unexpected.append(f"{desc}: loaded")
            continue
        try:
            _check_loaded(out)
        except Exception as exc:                                 # noqa: BLE001 - the finding
            unexpected.append(f"{desc}: inconsistent result {type(exc).__name__}: {exc}"[:300])
    elapsed = time.perf_counter() - t0
    print(f"\nfuzz: {counts} in {elapsed:.1f} s")
    assert not unexpected, f"{len(unexpected)} bad outcomes, first: {unexpected[:5]}"
    assert counts["cases"] == FUZZ_CASES >= 10_000
    assert counts["format_error"] > FUZZ_CASES // 2 and counts["loaded"] > 100   # both paths ran


def _hostile(raw, change):
    header, data = _split(raw)
    decomps = json.loads(header["__metadata__"]["decompositions"])
    change(header, decomps)
    header["__metadata__"]["decompositions"] = json.dumps(decomps)
    return _join(header, data)


def _huge_everything(header, decomps):
    """Shape 2**40 per mode, tensor lengths and offsets made consistent with it."""
    entry = decomps["signcut"]
    entry["shape"] = [2**40] * len(entry["shape"])
    entry["width"] = 2**20
    offset = 0
    for t in sorted(k for k in header if k != "__metadata__"):
        code = header[t]["dtype"]
        n = 2**20 if code != "U8" else 2**57
        size = n * {"U8": 1, "F32": 4, "F64": 8}[code]
        header[t]["shape"] = [n]
        header[t]["data_offsets"] = [offset, offset + size]
        offset += size


def _many_names(header, decomps):
    header["__metadata__"]["container"] = "mapping"
    for i in range(300):
        decomps[f"n{i}"] = {"shape": [2**40] * 32, "width": 2**40, "orig_dtype": "float64",
                            "norm": None}


# Allowed peak allocation per byte of file: 10x, except for a header made of 300 entries,
# where parsing the JSON itself (Python objects for every key, list and integer) takes ~14x.
HOSTILE_HEADERS = {
    "huge shape, consistent tensors": _huge_everything,
    "32 dims of 2**40": lambda h, d: d["signcut"].update(shape=[2**40] * 32),
    "width 2**40": lambda h, d: d["signcut"].update(width=2**40),
    "width 10**400": lambda h, d: d["signcut"].update(width=10**400),
    "tensor shape 2**62": lambda h, d: h["signcut/coef"].update(shape=[2**62]),
    "offsets 2**62": lambda h, d: h["signcut/coef"].update(data_offsets=[0, 2**62]),
    "300 huge names": _many_names,
}
FACTOR = {"300 huge names": 20}


@pytest.mark.parametrize("case", list(HOSTILE_HEADERS))
def test_hostile_header_allocates_little(seed_files, tmp_path, case):
    """Tiny files whose headers declare huge shapes/widths/offsets fail with FormatError, and
    the peak Python allocation while loading stays under 64 KB + 10x the file size (20x for a
    header of 300 entries, which is all JSON to parse): nothing scales with the declared sizes."""
    data = _hostile(seed_files[0], HOSTILE_HEADERS[case])
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(data)
    size = len(data)
    assert size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            signcut.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 + FACTOR.get(case, 10) * size, (peak, size)


def test_hostile_header_length_allocates_little(tmp_path):
    """A 100-byte file whose header length field says 2**40 or 99,999,999 bytes: FormatError
    without reading (allocating) that much."""
    for n in (2**40, 99_999_999, 92):
        path = tmp_path / "h"
        path.write_bytes(n.to_bytes(8, "little") + b"{" + b" " * 91)
        tracemalloc.start()
        try:
            with pytest.raises(FormatError):
                signcut.load(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024 + 10 * 100, (n, peak)


def test_bug_loader_rel_error_huge_int(seed_files, tmp_path):
    path = tmp_path / "x"
    path.write_bytes(_hostile(seed_files[0], lambda h, d: d["signcut"].update(rel_error=10**400)))
    with pytest.raises(FormatError):
        signcut.load(path)


@pytest.mark.parametrize("record", [{"shape": [float("inf")], "axes": [0, 1]},
                                    {"shape": [63], "axes": [float("inf"), 0]}])
def test_bug_loader_tensorize_infinity(seed_files, tmp_path, record):
    path = tmp_path / "x"
    path.write_bytes(_hostile(seed_files[0], lambda h, d: d["signcut"].update(tensorize=record)))
    with pytest.raises(FormatError):
        signcut.load(path)


def _width0(shape):
    """A valid file of a width-0 decomposition of a 4-vector, edited to declare ``shape``."""
    def change(header, decomps):
        decomps["signcut"]["shape"] = shape
        del header["signcut/signs.0"]
        for a in range(len(shape)):
            header[f"signcut/signs.{a}"] = {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}
    return change


@pytest.fixture
def width0_file(tmp_path):
    path = tmp_path / "w0.safetensors"
    signcut.save(path, signcut.decompose(np.zeros(4), width=1))
    return path


def test_bug_loader_width0_huge_shape(width0_file):
    raw = width0_file.read_bytes()
    width0_file.write_bytes(_hostile(raw, _width0([10**400])))
    try:
        signcut.load(width0_file)
    except FormatError:
        return
    raise AssertionError("loaded a decomposition with a 10**400 dimension")


@pytest.mark.parametrize("shape", [[2**40, 2**40], [2**64]])
def test_bug_loader_width0_size_overflow(width0_file, shape):
    raw = width0_file.read_bytes()
    width0_file.write_bytes(_hostile(raw, _width0(shape)))
    try:
        r = signcut.load(width0_file)
    except FormatError:
        return
    assert "width=0" in repr(r)                      # ZeroDivisionError / OverflowError today
    assert r.size == int(np.prod(shape, dtype=object))


# ================================================================== 5. sizes above 2**31 entries
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


# ================================================================== 6. across instruction sets
# The subprocesses run the signcut these tests import (-P: the working folder, maybe an unbuilt
# checkout, is not put on sys.path).
ISA_CASES = ("rng.standard_normal((150, 170), dtype=np.float32)",
             "rng.standard_normal((64, 9), dtype=np.float32) @ "
             "rng.standard_normal((9, 80), dtype=np.float32)",
             "rng.standard_normal((9, 10, 11), dtype=np.float32)")


def _decompose_with(isa, out):
    code = ("import sys, numpy as np, signcut\n"
            "assert signcut.cpu_info()['active'] == sys.argv[1]\n"
            "rng = np.random.default_rng(3)\n"
            f"cases = [{', '.join(ISA_CASES)}]\n"
            "res = [signcut.decompose(A, bits_per_entry=6, seed=1, n_threads=2) for A in cases]\n"
            "np.savez(sys.argv[2], **{f'{i}/{k}': v for i, r in enumerate(res) for k, v in\n"
            "         [('errors', r.errors), ('coef', r.coef)] + list(enumerate(r.signs))})\n")
    done = subprocess.run([sys.executable, "-P", "-c", code, isa, str(out)],
                          env=subprocess_env(SIGNCUT_CPU=isa),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(out)


def test_scalar_and_best_isa_agree(tmp_path):
    """The scalar kernels and the best ones the CPU has, each in its own process
    (SIGNCUT_CPU). The README promises errors within 2% after every cut; what is measured on
    AVX2, identical signs and coefficients and errors equal to double precision (only
    double-precision sums are ordered differently), is asserted for AVX2; AVX-512 has not
    run here and keeps the promise's tolerance."""
    best = signcut.cpu_info()["best"]
    if best == "scalar":
        pytest.skip("this CPU has no SIMD kernel set to compare with the scalar one")
    ref = _decompose_with("scalar", tmp_path / "scalar.npz")
    run = _decompose_with(best, tmp_path / f"{best}.npz")
    for i in range(len(ISA_CASES)):
        e0, e1 = ref[f"{i}/errors"], run[f"{i}/errors"]
        assert e0.shape == e1.shape and e0.size > 10
        if best == "avx2":
            np.testing.assert_allclose(e1, e0, rtol=1e-12)
            for key in ref.files:
                if key.startswith(f"{i}/") and key != f"{i}/errors":
                    np.testing.assert_array_equal(run[key], ref[key])
        else:
            np.testing.assert_allclose(e1, e0, rtol=0.02)
        assert np.isfinite(run[f"{i}/coef"]).all()
