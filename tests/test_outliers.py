"""decompose(..., outliers=q): the largest entries kept as a sparse part, checked against the
dense arrays, the budgets, the file format and bad input."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import signcut
from signcut import FormatError, SignCut
from signcut._api import auto_outlier_fraction, select_outliers
from reference import pack


def spiky(shape, count, seed=0):
    """A Gaussian array with ``count`` planted spikes of 20 to 50 standard deviations."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal(shape).astype(np.float32)
    flat = rng.choice(A.size, count, replace=False)
    A.reshape(-1)[flat] += rng.choice([-1.0, 1.0], count) * rng.uniform(20, 50, count)
    return A


def rel(A, B):
    A = np.asarray(A, np.float64)
    return np.linalg.norm(A - np.asarray(B, np.float64)) / np.linalg.norm(A)


@pytest.fixture(scope="module")
def pair():
    """A spiky matrix, and its decomposition with a sparse part."""
    A = spiky((67, 90), 30, seed=3)
    return A, signcut.decompose(A, bits_per_entry=6, seed=0, outliers=30 / A.size)


# ------------------------------------------------------------------ quality and budgets
def test_spikes_far_better_with_outliers_at_equal_bits():
    A = spiky((128, 160), 40)
    plain = signcut.decompose(A, bits_per_entry=8, seed=0)
    kept = signcut.decompose(A, bits_per_entry=8, seed=0, outliers=40 / A.size)
    assert kept.bits_per_entry <= 8 and plain.bits_per_entry <= 8
    assert kept.bits_per_entry > 8 - 64 * 160 / A.size    # the cuts got what the spikes left
    assert kept.rel_error < plain.rel_error / 4, (kept.rel_error, plain.rel_error)
    auto = signcut.decompose(A, bits_per_entry=8, seed=0, outliers="auto")
    assert len(auto.outliers) >= 40 and auto.rel_error < plain.rel_error / 4


def test_reported_errors_are_relative_to_the_whole(pair):
    A, sc = pair
    assert sc.norm == pytest.approx(np.linalg.norm(A.astype(np.float64)), rel=1e-6)
    assert sc.rel_error == pytest.approx(rel(A, sc.expand()), rel=1e-4)
    cut3 = sc.truncate(3)
    assert cut3.errors[-1] == pytest.approx(rel(A, cut3.expand()), rel=1e-4)
    assert np.all(np.diff(sc.errors) <= 1e-12)


def test_sparse_part_is_the_largest_entries_rounded_to_float16(pair):
    A, sc = pair
    order = np.argsort(np.abs(A).ravel(), kind="stable")[::-1][:30]
    assert np.array_equal(sc.outliers.index, np.sort(order))
    assert sc.outliers.index.dtype == np.uint32 and sc.outliers.values.dtype == np.float16
    stored = sc.outliers.dense_values(np.float64)
    exact = A.ravel()[sc.outliers.index].astype(np.float64)
    assert np.allclose(stored, exact, rtol=2.0 ** -11, atol=0)


def test_sizes_count_the_sparse_part(pair):
    A, sc = pair
    sparse = 30 * (4 + 2)
    assert sc.outliers_nbytes == sparse
    assert sc.nbytes == -(-sc.width * sum(A.shape) // 8) + 4 * sc.width + sparse
    assert sc.bits_per_entry == pytest.approx((sc.width * (sum(A.shape) + 32) + 8 * sparse) / A.size)
    assert sc.bits_per_entry <= 6
    r = signcut.decompose(A, ratio=0.25, seed=0, outliers=0.01)
    assert r.nbytes <= 0.25 * A.nbytes and r.nbytes + 4 + sum(A.shape) // 8 + 1 > 0.25 * A.nbytes
    w = signcut.decompose(A, width=7, seed=0, outliers=0.01)    # width counts cuts only
    assert w.width == 7 and len(w.outliers) == round(0.01 * A.size)


def test_index_dtype_is_uint32_below_2_to_the_32():
    from signcut._result import index_dtype
    assert index_dtype(2**32 - 1) == np.uint32 and index_dtype(2**32) == np.uint64


def test_gaussian_auto_keeps_nothing_and_loses_nothing():
    A = np.random.default_rng(5).standard_normal((300, 200)).astype(np.float32)
    assert auto_outlier_fraction(A) == 0.0
    plain = signcut.decompose(A, bits_per_entry=4, seed=1)
    auto = signcut.decompose(A, bits_per_entry=4, seed=1, outliers="auto")
    assert auto.outliers is None        # exactly the plain run
    assert all(np.array_equal(a, b) for a, b in zip(plain.signs, auto.signs))
    np.testing.assert_array_equal(plain.coef, auto.coef)


def test_auto_respects_storage_budget():
    A = np.random.default_rng(0).standard_t(1, (100, 100)).astype(np.float32)   # Cauchy
    q = auto_outlier_fraction(A)
    assert 0 < q <= 0.02
    q_budget = auto_outlier_fraction(A, bits_per_entry=1.0)
    assert q_budget * 48 <= 0.25 * 1.0 + 1e-12


def test_no_outliers_is_plain():
    A = spiky((40, 50), 5)
    for q in (None, 0, 0.0):
        r = signcut.decompose(A, width=9, seed=2, outliers=q)
        assert r.outliers is None
    tiny = signcut.decompose(A, width=9, seed=2, outliers=1e-9)     # rounds to none
    assert tiny.outliers is None
    empty = SignCut(A.shape, tiny.signs, tiny.coef, tiny.errors, norm=tiny.norm,
                    outliers=(np.empty(0, np.uint32), np.empty(0, np.float16), 0))
    np.testing.assert_array_equal(empty.expand(), tiny.expand())
    assert empty.nbytes == tiny.nbytes and empty[2, 3] == tiny[2, 3]


@pytest.mark.parametrize("q,exc,match", [
    (-0.1, ValueError, "outliers"),
    (1.0, ValueError, r"\[0, 1\)"),
    (1.5, ValueError, r"\[0, 1\)"),
    (float("nan"), ValueError, "finite"),
    ("all", ValueError, "'auto'"),
    (True, TypeError, "outliers"),
    ([0.1], TypeError, "outliers"),
])
def test_bad_fractions(q, exc, match):
    with pytest.raises(exc, match=match):
        signcut.decompose(np.ones((4, 5)), width=2, outliers=q)


def test_sparse_part_can_eat_the_budget():
    A = spiky((30, 40), 10)
    with pytest.raises(ValueError, match="outliers"):
        signcut.decompose(A, bits_per_entry=1, outliers=0.1)


# ------------------------------------------------------------------ array behaviour
def test_indexing_equals_dense(pair, monkeypatch):
    A, sc = pair
    dense = sc.expand()
    expand = SignCut.expand                  # the answers may expand, sc itself may not
    monkeypatch.setattr(SignCut, "expand", lambda self, *a, **k: pytest.fail("expanded")
                        if self is sc else expand(self, *a, **k))
    i, j = np.unravel_index(int(sc.outliers.index[4]), A.shape)
    keys = [(i, j), (i,), (slice(None), j), (slice(2, 50, 3), slice(None, None, -2)),
            ([i, i, 0, i], slice(None)), (Ellipsis, [j, j]), (np.abs(dense[:, 0]) > 0.5,),
            (None, slice(i, i + 2), None, j), (-1, -1)]
    for key in keys:
        got, want = sc[key], dense[key]
        assert np.shape(got) == np.shape(want), key
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=str(key))


def test_sum_mean_matmul_equal_dense(pair, monkeypatch):
    A, sc = pair
    dense = sc.expand().astype(np.float64)
    monkeypatch.setattr(SignCut, "expand", lambda *a, **k: pytest.fail("expanded"))
    tol = dict(rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(sc.sum(), dense.sum(), **tol)
    for axis in (0, 1, (0, 1), -1):
        np.testing.assert_allclose(sc.sum(axis=axis), dense.sum(axis=axis), **tol)
        np.testing.assert_allclose(sc.mean(axis=axis, keepdims=True),
                                   dense.mean(axis=axis, keepdims=True), **tol)
    rng = np.random.default_rng(0)
    x, X = rng.standard_normal(90), rng.standard_normal((2, 90, 3)).astype(np.float32)
    y, Y = rng.standard_normal(67).astype(np.float32), rng.standard_normal((4, 67))
    np.testing.assert_allclose(sc @ x, dense @ x, **tol)
    np.testing.assert_allclose(sc @ X, dense @ X, **tol)
    np.testing.assert_allclose(y @ sc, y @ dense, **tol)
    np.testing.assert_allclose(Y @ sc, Y @ dense, **tol)


def test_transpose_and_truncate_keep_the_sparse_part(pair):
    A, sc = pair
    dense = sc.expand()
    np.testing.assert_array_equal(sc.T.expand(), dense.T)
    assert sc.T.outliers.equals(sc.T.T.T.outliers) and sc.T.T.outliers.equals(sc.outliers)
    t = sc.truncate(0)
    np.testing.assert_array_equal(t.expand().ravel()[sc.outliers.index],
                                  sc.outliers.dense_values())
    assert t.nbytes == sc.outliers_nbytes
    assert t.rel_error == pytest.approx(rel(A, t.expand()), rel=1e-4)
    unknown = SignCut(A.shape, t.signs, t.coef, norm=1.0,
                      outliers=(sc.outliers.index, sc.outliers.values, sc.outliers.exponent))
    assert np.isnan(unknown.rel_error)
    assert "outliers=30" in repr(sc) and "outliers" not in repr(signcut.decompose(A, width=1))


def test_tensor_order_3_and_1():
    A = spiky((9, 8, 12), 6, seed=1)
    sc = signcut.decompose(A, bits_per_entry=16, seed=0, outliers=6 / A.size)
    plain = signcut.decompose(A, bits_per_entry=16, seed=0)
    assert sc.rel_error == pytest.approx(rel(A, sc.expand()), rel=1e-4)
    assert sc.rel_error < plain.rel_error / 2
    dense = sc.expand()
    np.testing.assert_allclose(sc[:, 3], dense[:, 3], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(sc.sum(axis=(0, 2)), dense.sum(axis=(0, 2)), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(sc.transpose(2, 0, 1).expand(), dense.transpose(2, 0, 1))
    v = spiky((500,), 3)
    r = signcut.decompose(v, width=3, seed=0, outliers=3 / 500)
    assert r.rel_error == pytest.approx(rel(v, r.expand()), rel=1e-4)


def test_tensorized_outliers_in_the_user_layout():
    A = spiky((16, 24), 8, seed=2)
    sc = signcut.decompose(A, bits_per_entry=12, seed=0, outliers=8 / A.size,
                           shape=(4, 4, 24), axes=(2, 0, 1))
    assert sc.tensor_shape == (24, 4, 4) and sc.shape == A.shape
    order = np.argsort(np.abs(A).ravel())[::-1][:8]
    assert np.array_equal(sc.outliers.index, np.sort(order))
    assert sc.rel_error == pytest.approx(rel(A, sc.expand()), rel=1e-4)
    np.testing.assert_allclose(sc[3], sc.expand()[3], rtol=1e-6)


def test_constructor_checks_the_sparse_part():
    signs = [pack(np.ones((1, 3))), pack(np.ones((1, 4)))]
    good = (np.array([1, 5], np.uint32), np.array([2.0, -1.0], np.float16), 0)
    SignCut((3, 4), signs, [1.0], outliers=good)
    for bad, exc in [((np.array([5, 1]), good[1], 0), ValueError),
                     ((np.array([1, 12]), good[1], 0), ValueError),
                     ((np.array([1, 5]), np.array([1.0, 2.0]), 0), TypeError),
                     ((np.array([1]), good[1], 0), ValueError),
                     ((np.array([1.0, 5.0]), good[1], 0), TypeError),
                     ((good[0], np.array([np.inf, 1], np.float16), 0), ValueError),
                     ((good[0], good[1], 1.5), ValueError),
                     ("x", TypeError)]:
        with pytest.raises(exc):
            SignCut((3, 4), signs, [1.0], outliers=bad)


def test_large_values_fit_through_the_exponent():
    A = np.random.default_rng(0).standard_normal((20, 30)) * 1e6
    A[3, 4] = 4e10
    out = select_outliers(A, 5)
    assert np.isfinite(out.values).all()
    assert np.allclose(out.dense_values(np.float64), A.ravel()[out.index], rtol=2.0 ** -11)
    sc = signcut.decompose(A, width=20, seed=0, outliers=5 / A.size)
    assert sc.rel_error == pytest.approx(rel(A, sc.expand()), rel=1e-3)


# ------------------------------------------------------------------ file format
def test_round_trip_exact(tmp_path, pair):
    A, sc = pair
    path = tmp_path / "o.safetensors"
    signcut.save(path, sc, metadata={"app": "x"})
    back = signcut.load(path)
    assert back.outliers.equals(sc.outliers) and back.outliers.error == sc.outliers.error
    assert back.outliers.index.dtype == np.uint32
    np.testing.assert_array_equal(back.expand(), sc.expand())
    assert back.nbytes == sc.nbytes and back.rel_error == sc.rel_error
    assert signcut.read_metadata(path) == {"app": "x"}
    import safetensors.numpy as stnp
    raw = stnp.load_file(str(path))
    assert raw["signcut/outliers.values"].dtype == np.float16
    np.testing.assert_array_equal(raw["signcut/outliers.index"], sc.outliers.index)


def test_mapping_mixes_and_tensorized_round_trip(tmp_path):
    A = spiky((16, 24), 8, seed=2)
    items = {"plain": signcut.decompose(A, width=3, seed=0),
             "tz": signcut.decompose(A, width=5, seed=0, outliers=0.02, shape=(4, 4, 24)),
             "none": SignCut((16, 24), [np.zeros((0, 1), np.uint64)] * 2, [],
                             outliers=(np.empty(0, np.uint32), np.empty(0, np.float16), 0))}
    path = tmp_path / "m.safetensors"
    signcut.save(path, items)
    back = signcut.load(path)
    assert back["plain"].outliers is None and len(back["none"].outliers) == 0
    for k in items:
        np.testing.assert_array_equal(back[k].expand(), items[k].expand())
    assert back["tz"].outliers.equals(items["tz"].outliers)


def _header(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write(path, header, data):
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def test_versions(tmp_path, pair):
    A, sc = pair
    plain, kept = tmp_path / "p.safetensors", tmp_path / "k.safetensors"
    signcut.save(plain, signcut.decompose(A, width=2, seed=0))
    signcut.save(kept, sc)
    assert _header(plain)[0]["__metadata__"]["format_version"] == "1"    # old readers read it
    header, data = _header(kept)
    assert header["__metadata__"]["format_version"] == "2"
    header["__metadata__"]["format_version"] = "1"
    _write(kept, header, data)
    with pytest.raises(FormatError, match="version 1"):
        signcut.load(kept)


@pytest.mark.parametrize("change,match", [
    ("index_range", "out of range"),
    ("index_order", "strictly increasing"),
    ("values_inf", "finite"),
    ("index_dtype", "wrong dtype"),
    ("values_dtype", "wrong dtype"),
    ("count", "wrong shape"),
    ("count_huge", "count"),
    ("exponent", "exponent"),
    ("bad_record", "outliers must be"),
    ("error", "outlier error"),
    ("missing", "missing tensors"),
])
def test_corrupt_sparse_part(tmp_path, pair, change, match):
    A, sc = pair
    path = tmp_path / "c.safetensors"
    signcut.save(path, sc)
    header, data = _header(path)
    data = bytearray(data)
    decomps = json.loads(header["__metadata__"]["decompositions"])
    entry = decomps["signcut"]
    ix, vx = header["signcut/outliers.index"], header["signcut/outliers.values"]
    index = np.frombuffer(data, "<u4", count=30, offset=ix["data_offsets"][0]).copy()
    if change == "index_range":
        index[-1] = A.size
    elif change == "index_order":
        index[3] = index[2]
    elif change == "values_inf":
        data[vx["data_offsets"][0]:vx["data_offsets"][0] + 2] = np.float16(np.inf).tobytes()
    elif change == "index_dtype":
        ix["dtype"] = "U64"
    elif change == "values_dtype":
        vx["dtype"] = "BF16"
    elif change == "count":
        entry["outliers"]["count"] = 29
    elif change == "count_huge":
        entry["outliers"]["count"] = A.size + 1
    elif change == "exponent":
        entry["outliers"]["exponent"] = 1.5
    elif change == "error":
        entry["outliers"]["error"] = -1
    elif change == "bad_record":
        entry["outliers"] = [30, 0]
    elif change == "missing":
        del header["signcut/outliers.values"]
    data[ix["data_offsets"][0]:ix["data_offsets"][1]] = index.tobytes()
    header["__metadata__"]["decompositions"] = json.dumps(decomps)
    _write(path, header, bytes(data))
    with pytest.raises(FormatError, match=match):
        signcut.load(path)


def test_sparse_part_alone_and_rtol():
    A = spiky((40, 50), 20, seed=4).astype(np.float64)
    only = signcut.decompose(A, rtol=0.9, seed=0, outliers=0.01)
    assert only.width == 0 and only.stopped_by == "rtol"
    assert only.rel_error == pytest.approx(rel(A, only.expand()), rel=1e-4)
    assert only.rel_error > 0.1
    r = signcut.decompose(A, rtol=0.1, seed=0, outliers=0.01)
    assert r.rel_error <= 0.1 < r.errors[-2] and r.stopped_by == "rtol"
    assert r.truncate(0).rel_error == only.rel_error
    exact = signcut.decompose(np.array([[3.0, 0.5]]), width=2, outliers=0.5)
    assert exact.rel_error == pytest.approx(rel([[3.0, 0.5]], exact.expand()), abs=1e-7)
    zero = signcut.decompose(np.zeros((5, 6)), width=3, outliers=0.1)
    assert zero.width == 0 and zero.rel_error == 0 and not zero.expand().any()


def test_integer_and_bool_inputs():
    B = np.random.default_rng(0).integers(-3, 4, (20, 30))
    B[2, 3] = 1000
    r = signcut.decompose(B, width=30, outliers=1 / 600, seed=0)
    assert list(r.outliers.index) == [2 * 30 + 3] and r.expand()[2, 3] == pytest.approx(1000, rel=1e-3)
    assert r.rel_error == pytest.approx(rel(B, r.expand()), rel=1e-4)
    b = signcut.decompose(B > 0, width=3, outliers=0.01, seed=0)
    assert b.orig_dtype == np.bool_ and len(b.outliers) == 6


@st.composite
def sparse_signcuts(draw):
    shape = tuple(draw(st.lists(st.integers(1, 70), min_size=1, max_size=3)))
    width = draw(st.integers(0, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    count = draw(st.integers(0, min(size, 20)))
    index = np.sort(rng.choice(size, count, replace=False)).astype(np.uint32)
    values = (rng.standard_normal(count) * 1000).astype(np.float16)
    signs = [pack(rng.choice([-1.0, 1.0], size=(width, d))) for d in shape]
    return SignCut(shape, signs, rng.standard_normal(width), norm=1.0,
                   outliers=(index, values, draw(st.integers(-20, 20))))


@settings(max_examples=40, deadline=None)
@given(sc=sparse_signcuts(), data=st.data())
def test_property_sparse_part_agrees_with_dense(tmp_path_factory, sc, data):
    dense = sc.expand().astype(np.float64)
    path = tmp_path_factory.mktemp("p") / "x.safetensors"
    signcut.save(path, sc)
    back = signcut.load(path)
    assert back.outliers.equals(sc.outliers)
    np.testing.assert_array_equal(back.expand(), sc.expand())
    scale = max(1.0, float(np.abs(dense).sum()))
    key = tuple(data.draw(st.integers(-d, d - 1)) if data.draw(st.booleans()) else slice(None)
                for d in sc.shape)
    np.testing.assert_allclose(sc[key], dense[key], rtol=1e-5, atol=1e-6 * scale)
    axis = data.draw(st.integers(0, sc.ndim - 1))
    np.testing.assert_allclose(sc.sum(axis=axis), dense.sum(axis=axis), rtol=1e-5,
                               atol=1e-6 * scale)
    if sc.ndim == 2:
        x = np.random.default_rng(0).standard_normal(sc.shape[1])
        np.testing.assert_allclose(sc @ x, dense @ x, rtol=1e-4, atol=1e-5 * scale)
