"""Every kernel against a NumPy reference and against the scalar kernel, for each
instruction set this CPU supports."""
import numpy as np
import pytest

from signcut import _core
from reference import pack, random_signs, unpack

SIZES = [0, 1, 7, 8, 9, 63, 64, 65, 127, 1000]


def close(a, b, scale=1.0):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale)



def test_every_kernel_table_is_complete():
    """The tables are filled by field name: a kernel missed in one file would be NULL. Every
    table compiled in is checked, also one this CPU cannot run (x86: all three)."""
    import platform
    names = _core.ISA_NAMES if platform.machine().lower() in ("x86_64", "amd64") else ("scalar",)
    for name in names:
        assert _core.missing_kernel(name) is None, name


@pytest.mark.parametrize("length", SIZES)
@pytest.mark.parametrize("k", [0, 1, 3, 4, 8, 9, 17])
def test_accum_rows(isa, rng, length, k):
    # rows taken from a wider array with a row stride: a non-contiguous view
    big = rng.standard_normal((20, length + 13)).astype(np.float32)
    rows = big[:, 5:5 + length] if length else big[:, :0]
    check_accum(_core.kernel_accum_rows, isa, rng, rows, rows, k)


def check_accum(kernel, isa, rng, rows, dense, k):
    """y += sum_q w[q] * rows[idx[q]] (dense: the rows' values, float64-able) against NumPy
    and against the scalar kernel."""
    length = dense.shape[1]
    idx = rng.integers(0, len(rows), size=k).astype(np.int64)
    w = rng.standard_normal(k).astype(np.float32)
    y0 = rng.standard_normal(length).astype(np.float32)
    expect = y0.astype(np.float64) + (w[:, None].astype(np.float64) * dense[idx]).sum(axis=0)
    y = y0.copy()
    kernel(isa, y, rows, idx, w)
    close(y, expect, 10)
    ys = y0.copy()
    kernel("scalar", ys, rows, idx, w)
    close(y, ys, 10)


@pytest.mark.parametrize("length", SIZES)
@pytest.mark.parametrize("k", [1, 2, 5])
def test_signs_matvec(isa, rng, length, k):
    signs = random_signs(rng, k, length)
    w = rng.standard_normal(k).astype(np.float32)
    y0 = rng.standard_normal(length).astype(np.float32)
    y = y0.copy()
    _core.kernel_signs_matvec(isa, y, pack(signs), w)
    close(y, y0 + w @ signs, 5)


@pytest.mark.parametrize("length", SIZES)
@pytest.mark.parametrize("k", [1, 2, 5])
def test_signs_rmatvec(isa, rng, length, k):
    signs = random_signs(rng, k, length)
    x = rng.standard_normal(length).astype(np.float32)
    z = _core.kernel_signs_rmatvec(isa, x, pack(signs))
    close(z, signs @ x.astype(np.float64), np.sqrt(max(length, 1)))


@pytest.mark.parametrize("rows", [0, 1, 3, 4, 5, 33])
@pytest.mark.parametrize("cols", [0, 1, 15, 16, 17, 64, 129, 300])
@pytest.mark.parametrize("k", [1, 3, 70])
def test_rank_update(isa, rng, rows, cols, k):
    a = rng.standard_normal((rows, k)).astype(np.float32)
    panel = np.sign(rng.standard_normal((k, cols))).astype(np.float32)
    big = rng.standard_normal((rows, cols + 9)).astype(np.float32)
    out = big[:, 2:2 + cols]                      # rows with a stride
    expect = out.astype(np.float64) + a.astype(np.float64) @ panel
    before = big.copy()
    _core.kernel_rank_update(isa, out, a, panel)
    close(out, expect, np.sqrt(k) * 4)
    # entries outside the view are untouched
    np.testing.assert_array_equal(big[:, :2], before[:, :2])
    np.testing.assert_array_equal(big[:, 2 + cols:], before[:, 2 + cols:])


@pytest.mark.parametrize("length", SIZES)
def test_pack_signs(isa, rng, length):
    x = rng.standard_normal(length).astype(np.float32)
    if length > 3:
        x[:3] = [0.0, -0.0, -1e-30]               # zeros are +1, tiny negatives -1
    bits, total = _core.kernel_pack_signs(isa, x)
    np.testing.assert_array_equal(bits, pack(np.where(x < 0, -1.0, 1.0))[0])
    if length % 64:
        assert bits[-1] >> np.uint64(length % 64) == 0, "tail bits must stay zero"
    assert total == pytest.approx(np.abs(x.astype(np.float64)).sum(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("length", SIZES)
def test_diff_signs(isa, rng, length):
    a = rng.standard_normal(length).astype(np.float32)
    b = rng.standard_normal(length).astype(np.float32)
    if length > 3:
        b[0] = a[0]                               # equal entries are +1, -0.0 too
        a[1], b[1] = -0.0, 0.0
        a[2], b[2] = 1e-30, 2e-30                 # a tiny negative difference is -1
    d = a - b                                     # float32 differences, as the kernel's
    bits, total = _core.kernel_diff_signs(isa, a, b)
    np.testing.assert_array_equal(bits, pack(np.where(d < 0, -1.0, 1.0))[0])
    if length % 64:
        assert bits[-1] >> np.uint64(length % 64) == 0, "tail bits must stay zero"
    assert total == pytest.approx(np.abs(d.astype(np.float64)).sum(), rel=1e-12, abs=1e-12)
    np.testing.assert_array_equal(bits, _core.kernel_diff_signs("scalar", a, b)[0])


@pytest.mark.parametrize("length", SIZES)
def test_unpack_signs(isa, rng, length):
    signs = random_signs(rng, 1, length)
    out = _core.kernel_unpack_signs(isa, pack(signs)[0], length, 0.5)
    np.testing.assert_array_equal(out, 0.5 * signs[0])


@pytest.mark.parametrize("length", SIZES)
@pytest.mark.parametrize("k", [1, 4, 9])
def test_sign_dots(isa, rng, length, k):
    signs = random_signs(rng, k, length)
    x = random_signs(rng, 1, length)
    dots = _core.kernel_sign_dots(isa, pack(signs), pack(x)[0], length)
    np.testing.assert_array_equal(dots, (signs @ x[0]).astype(np.int64))


@pytest.mark.parametrize("length", SIZES)
def test_sumsq(isa, rng, length):
    x = rng.standard_normal(length).astype(np.float32)
    assert _core.kernel_sumsq(isa, x) == pytest.approx((x.astype(np.float64) ** 2).sum(), rel=1e-12)


@pytest.mark.parametrize("length", SIZES)
@pytest.mark.parametrize("k", [1, 2, 3, 31, 32, 33, 34, 64])
def test_group_apply(isa, rng, length, k):
    signs = random_signs(rng, k, length)               # (k, length)
    pend = pack(signs.T)[:, 0] if length else np.zeros(0, np.uint64)   # bit j of word i
    w = rng.standard_normal(k).astype(np.float32)
    y0 = rng.standard_normal(length).astype(np.float32)
    y = y0.copy()
    _core.kernel_group_apply(isa, y, pend, w)
    # 16-bit fixed point: each group's table entry is off by at most half a unit,
    # unit = sum |w| / 32752 (the float32 additions add a little more)
    unit = np.abs(w.astype(np.float64)).sum() / 32752
    exact = y0 + w.astype(np.float64) @ signs
    bound = 0.5 * unit * ((k + 3) // 4) + 1e-6 * (np.abs(exact) + unit)
    assert np.all(np.abs(y - exact) <= bound)
    ys = y0.copy()
    _core.kernel_group_apply("scalar", ys, pend, w)
    np.testing.assert_array_equal(y, ys)              # same tables, same order of adds


@pytest.mark.parametrize("k", [0, 1, 3, 4, 5, 31, 64])
def test_nib_tables(isa, rng, k):
    """The group tables against NumPy: entry x of group g is the sum of the group's weights in
    units of sum|w| / 32752, minus where bit b of x is set, rounded to nearest (ties to even)."""
    w = (rng.standard_normal(k) * 10.0 ** rng.integers(-3, 3, size=k)).astype(np.float32)
    if k == 5:
        w[:] = [2.5, 0, 0, 0, 32749.5]   # unit 1: entries +-2.5 and +-32749.5 are ties
    tab, unit = _core.kernel_nib_tables(isa, w)
    if k == 0:
        assert tab.shape == (0, 16) and unit == 0
        return
    total = np.abs(w.astype(np.float64)).sum()
    assert unit == np.float32(total / 32752)
    v = np.zeros(4 * tab.shape[0], np.float32)
    v[:k] = w * np.float32(32752 / total)
    v = v.reshape(-1, 4)
    sign = np.where((np.arange(16)[:, None] >> np.arange(4)) & 1, np.float32(-1), np.float32(1))
    sv = v[:, None, :] * sign                          # (groups, 16, 4), exact sign flips
    expect = np.rint((sv[..., 0] + sv[..., 1]) + (sv[..., 2] + sv[..., 3]))
    np.testing.assert_array_equal(tab, expect.astype(np.int16))
    if k == 5:
        assert set(tab[0]) == {2, -2} and set(tab[1]) == {32750, -32750}
    assert np.abs(tab).max(axis=1).sum() <= 32767     # the groups' sum stays in int16


@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (1, 70), (70, 1), (8, 8), (9, 17), (64, 65), (300, 257)])
def test_transpose(isa, rng, shape):
    src = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(_core.kernel_transpose(isa, src), src.T)
    big = rng.standard_normal((shape[0], shape[1] + 3)).astype(np.float32)
    view = big[:, 1:1 + shape[1]]
    np.testing.assert_array_equal(_core.kernel_transpose(isa, view), view.T)


def test_pack_reference_roundtrip(rng):
    signs = random_signs(rng, 3, 130)
    np.testing.assert_array_equal(unpack(pack(signs), 130), signs)


# ------------------------------------------------- float16 copies of the matrix engine


def _half_bits(x):
    """Reference: float16 bits of float32 x (NumPy rounds to nearest even)."""
    return np.asarray(x, np.float32).astype(np.float16).view(np.uint16)


@pytest.mark.parametrize("length", SIZES)
def test_to_half(isa, rng, length):
    x = rng.standard_normal(length).astype(np.float32) * 3.0
    for scale in (1.0, 2.0 ** 12, 2.0 ** -3):
        np.testing.assert_array_equal(_core.kernel_to_half(isa, x, scale), _half_bits(x * scale))


def test_to_half_edge_values(isa):
    # subnormal halves, ties to even, the largest half, overflow, signed zeros
    x = np.array([0.0, -0.0, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -14 - 2.0 ** -26,
                  6.1e-5, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 65504.0, 65519.0, 65520.0,
                  1e6, -1e6, 1e-30, -5.96e-8] * 2, np.float32)
    with np.errstate(over="ignore"):
        expect = _half_bits(x)
    np.testing.assert_array_equal(_core.kernel_to_half(isa, x, 1.0), expect)


@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (3, 5), (8, 8), (9, 17), (64, 63), (300, 40),
                                   (16, 1000), (1000, 16)])
def test_transpose16(isa, rng, shape):
    big = rng.integers(0, 2**16, size=(shape[0], shape[1] + 3)).astype(np.uint16)
    view = big[:, 1:1 + shape[1]]            # rows with a stride: a non-contiguous view
    np.testing.assert_array_equal(_core.kernel_transpose16(isa, view), view.T)


@pytest.mark.parametrize("length", SIZES)
@pytest.mark.parametrize("k", [0, 1, 3, 8, 9, 17])
def test_accum_rows_h(isa, rng, length, k):
    rows = _half_bits(rng.standard_normal((20, length + 5)))
    dense = rows.view(np.float16).astype(np.float64)[:, :length]
    check_accum(_core.kernel_accum_rows_h, isa, rng, rows, dense, k)


@pytest.mark.parametrize("length", SIZES)
def test_absmax(isa, rng, length):
    x = rng.standard_normal(length).astype(np.float32)
    expect = float(np.abs(x).max()) if length else 0.0
    assert _core.kernel_absmax(isa, x) == expect


def test_type_stub_names_every_public_function_of_the_core():
    """signcut/_core.pyi (what editors and type checkers see) declares every public name of the
    compiled module but the test-only kernel wrappers, and nothing it lacks."""
    import ast
    import pathlib
    stub = pathlib.Path(_core.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    declared = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    declared |= {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    declared.discard("__getattr__")
    public = {name for name in dir(_core) if not name.startswith("_")
              and not name.startswith("kernel_") and name not in ("np", "os", "cnp")
              and (callable(getattr(_core, name)) or name.isupper())}
    assert public == declared, (public - declared, declared - public)
