"""signcut.image: compress, save, decode, budgets, layouts and the file size."""
import json
import math
import os
from importlib import resources

import numpy as np
import pytest
from PIL import Image

import signcut
from signcut import image

CAT = resources.files("signcut") / "data" / "chelsea.png"


def picture(h, w, c, seed=0):
    """A smooth uint8 picture with some texture, (h, w, c) (c = 0 gives (h, w))."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = []
    for k in range(max(c, 1)):
        p = (128 + 70 * np.sin(x / (5 + 3 * k)) * np.cos(y / (7 + k)) + 20 * (x - w / 2) / w
             + rng.normal(0, 6, (h, w)))
        planes.append(p)
    arr = np.clip(np.rint(np.stack(planes, -1)), 0, 255).astype(np.uint8)
    return arr[..., 0] if c == 0 else arr


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def header_bytes(path):
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("c, mode", [(0, "L"), (1, "L"), (3, "RGB"), (4, "RGBA")])
def test_array_round_trip(tmp_path, c, mode):
    arr = picture(37, 53, c)
    res = image.compress(arr, ratio=0.2, seed=1)
    out = res.to_array()
    assert out.dtype == np.uint8 and out.shape == arr.shape
    assert res.mode == mode and res.shape == arr.shape and res.size == (53, 37)
    assert res.psnr == pytest.approx(psnr(arr, out))
    assert res.psnr > 20
    res.save(tmp_path / "p.sct")
    back = image.decode(tmp_path / "p.sct")
    assert np.array_equal(back.to_array(), out)
    assert back.psnr == pytest.approx(res.psnr)
    assert back.nbytes == res.nbytes and back.cuts == res.cuts and back.mode == mode
    pil = back.to_image()
    assert pil.mode == mode and pil.size == (53, 37)
    assert np.array_equal(np.asarray(pil).reshape(arr.shape), out)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_pil_and_path_inputs(tmp_path, mode):
    arr = picture(30, 41, {"L": 0, "RGB": 3, "RGBA": 4}[mode], seed=2)
    pil = Image.fromarray(arr)
    pil.save(tmp_path / "in.png")
    a = image.compress(arr, ratio=0.1, seed=3)
    b = image.compress(pil, ratio=0.1, seed=3)
    c = image.compress(tmp_path / "in.png", ratio=0.1, seed=3)
    d = image.compress(str(tmp_path / "in.png"), ratio=0.1, seed=3)
    for r in (b, c, d):
        assert r.mode == mode
        assert np.array_equal(r.to_array(), a.to_array())
        assert r.nbytes == a.nbytes


def test_other_pil_modes_are_converted():
    arr = picture(20, 24, 3)
    pal = Image.fromarray(arr).convert("P")
    assert image.compress(pal, ratio=0.3, seed=0).mode == "RGB"
    la = Image.fromarray(picture(20, 24, 0)).convert("LA")
    assert image.compress(la, ratio=0.3, seed=0).mode == "RGBA"
    i16 = Image.fromarray((picture(20, 24, 0).astype(np.uint16) * 257))
    res = image.compress(i16, ratio=0.3, seed=0)
    assert res.mode == "L" and res.psnr > 20


def test_seed_is_deterministic():
    arr = picture(40, 40, 3)
    a = image.compress(arr, ratio=0.1, seed=7)
    b = image.compress(arr, ratio=0.1, seed=7)
    assert np.array_equal(a.to_array(), b.to_array())


def test_constant_picture_is_exact():
    """Means carry the level exactly, in either colour basis; no cut is needed."""
    for color in ("rgb", "ycbcr"):
        arr = np.empty((9, 13, 3), np.uint8)
        arr[...] = (200, 30, 77)
        res = image.compress(arr, ratio=0.5, color=color, seed=0)
        assert np.array_equal(res.to_array(), arr)
        assert res.psnr == math.inf


def test_ycbcr_transform_inverts():
    rgb = np.random.default_rng(0).uniform(0, 255, (1000, 3))
    back = (rgb @ image._RGB_TO_YCC.T) @ image._YCC_TO_RGB.T
    assert np.allclose(back, rgb, atol=1e-9)


# ------------------------------------------------------------------ layouts
@pytest.mark.parametrize("tile", [None, 1, 5, 8, (4, 9), (16, 3), 100])
@pytest.mark.parametrize("color", ["rgb", "ycbcr"])
def test_tiles_and_colours(tmp_path, tile, color):
    arr = picture(37, 53, 3, seed=4)            # 37 and 53 are prime: every tile pads
    res = image.compress(arr, ratio=0.25, tile=tile, color=color, seed=0)
    out = res.to_array()
    assert out.shape == arr.shape
    assert res.psnr > 17             # tile 100 is one block: each cut is one 1-bit picture
    expected = None if tile is None else (
        (min(tile, 37), min(tile, 53)) if isinstance(tile, int) else (tile[0], tile[1]))
    assert res.tile == expected
    assert list(res.planes) == (["rgb"] if color == "rgb" else ["luma", "chroma"])
    res.save(tmp_path / "t.sct")
    back = image.decode(tmp_path / "t.sct")
    assert back.tile == expected and back.color == color
    assert np.array_equal(back.to_array(), out)


def test_tiled_layout_is_a_matrix_of_blocks():
    arr = picture(37, 53, 3)
    res = image.compress(arr, ratio=0.1, tile=8, color="rgb", seed=0)
    sc = res.planes["rgb"]
    assert sc.tensor_shape == (5 * 7, 8 * 8 * 3)         # padded to 40 x 56
    assert sc.shape == (5, 7, 8, 8, 3)                   # expand() gives the blocks


def test_tiling_helps_on_the_cat():
    """The defaults beat the plain (H, W, 3) tensor (measured: 28.2 against 25.9 dB at 2%)."""
    plain = image.compress(CAT, ratio=0.02, tile=None, color="rgb", seed=0)
    best = image.compress(CAT, ratio=0.02, seed=0)
    assert best.tile == (image.DEFAULT_TILE,) * 2 and best.color == image.DEFAULT_COLOR
    assert best.psnr > plain.psnr + 1.5
    assert best.psnr > 27.5


# ------------------------------------------------------------------ budgets
def test_ratio_and_nbytes():
    arr = picture(60, 70, 3)
    for ratio in (0.03, 0.1, 0.3):
        res = image.compress(arr, ratio=ratio, seed=0)
        total = sum(p.nbytes for p in res.planes.values()) + 4 * 3
        assert res.nbytes == total
        assert res.raw_nbytes == 60 * 70 * 3
        assert res.ratio == pytest.approx(res.nbytes / res.raw_nbytes)
        assert res.ratio <= ratio
        assert res.ratio > 0.8 * ratio                 # the budget is used
        assert res.bits_per_pixel == pytest.approx(8 * res.nbytes / (60 * 70))


def test_budgets_combine():
    arr = picture(60, 70, 3)
    a = image.compress(arr, ratio=0.1, seed=0)
    b = image.compress(arr, bits_per_pixel=0.1 * 8 * 3, seed=0)
    assert a.nbytes == b.nbytes
    c = image.compress(arr, ratio=0.1, width=3, seed=0)
    assert all(p.width <= 3 for p in c.planes.values())
    d = image.compress(arr, width=4, seed=0)
    assert [p.width for p in d.planes.values()] == [4, 4]


def test_luma_gets_most_of_the_budget():
    res = image.compress(picture(64, 64, 3), ratio=0.2, tile=8, seed=0)
    luma, chroma = res.planes["luma"].nbytes, res.planes["chroma"].nbytes
    assert luma / (luma + chroma) == pytest.approx(image.LUMA_SHARE, abs=0.05)


def test_alpha_constant_is_lossless_and_free():
    arr = picture(30, 40, 4)
    arr[..., 3] = 255
    res = image.compress(arr, ratio=0.1, seed=0)
    assert res.planes["alpha"].width == 0
    assert (res.to_array()[..., 3] == 255).all()
    rgb = image.compress(arr[..., :3], ratio=0.1 * 4 / 3, seed=0)
    assert res.cuts == rgb.cuts                          # the colour gets the whole budget


def test_alpha_varying_is_decomposed():
    arr = picture(64, 64, 4)
    y, x = np.mgrid[0:64, 0:64]
    arr[..., 3] = np.where((x - 32) ** 2 + (y - 21) ** 2 < 512, 255, 0)     # a disc
    res = image.compress(arr, ratio=0.3, seed=0)
    alpha = res.planes["alpha"]
    assert alpha.width > 0
    assert alpha.nbytes / res.nbytes == pytest.approx(image.ALPHA_SHARE, abs=0.05)
    flat = np.full((64, 64), round(arr[..., 3].mean()))
    assert psnr(arr[..., 3], res.to_array()[..., 3]) > psnr(arr[..., 3], flat) + 12


def test_truncate_is_progressive():
    res = image.compress(picture(48, 64, 3), ratio=0.2, seed=0)
    assert res.truncate(res.cuts).psnr == pytest.approx(res.psnr)
    flat = res.truncate(0)
    assert flat.cuts == 0 and flat.nbytes == 4 * 3
    half = res.truncate(res.cuts // 2)
    assert half.cuts == res.cuts // 2
    assert flat.psnr < half.psnr < res.psnr
    assert res.truncate_to(0.1).ratio <= 0.1
    with pytest.raises(ValueError):
        res.truncate(res.cuts + 1)


def test_callback_counts_and_stops():
    seen = []
    res = image.compress(picture(40, 50, 3), ratio=0.2, seed=0,
                         callback=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (res.cuts, res.cuts)
    assert [d for d, _ in seen] == list(range(1, res.cuts + 1))
    stopped = image.compress(picture(40, 50, 3), ratio=0.2, seed=0,
                             callback=lambda done, total: done >= 3)
    assert stopped.cuts == 3 and stopped.planes["chroma"].width == 0


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad, error", [
    (np.zeros((4, 4), np.float32), TypeError),
    (np.zeros((4, 4, 2), np.uint8), ValueError),
    (np.zeros((4, 4, 3, 1), np.uint8), ValueError),
    (np.zeros((0, 4, 3), np.uint8), ValueError),
    (np.zeros((4, 0), np.uint8), ValueError),
])
def test_bad_arrays(bad, error):
    with pytest.raises(error):
        image.compress(bad, ratio=0.5)


def test_bad_arguments(tmp_path):
    arr = picture(20, 20, 3)
    with pytest.raises(ValueError, match="budget"):
        image.compress(arr)
    for kw in (dict(ratio=0), dict(ratio=-1), dict(ratio=float("nan")), dict(bits_per_pixel=0),
               dict(ratio=0.1, color="hsv"), dict(ratio=0.1, tile=0), dict(ratio=0.1, tile=(3, -1)),
               dict(width=-2), dict(ratio=1e-5)):
        with pytest.raises(ValueError):
            image.compress(arr, **kw)
    for kw in (dict(ratio="0.1"), dict(ratio=0.1, tile="8"), dict(ratio=0.1, tile=(1, 2, 3)),
               dict(ratio=0.1, callback=3)):
        with pytest.raises(TypeError):
            image.compress(arr, **kw)
    with pytest.raises(FileNotFoundError):
        image.compress(tmp_path / "missing.png", ratio=0.1)
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(OSError):
        image.compress(tmp_path / "text.png", ratio=0.1)


# ------------------------------------------------------------------ files
def test_file_is_a_signcut_file(tmp_path):
    res = image.compress(picture(37, 53, 3), ratio=0.1, seed=0)
    res.save(tmp_path / "p.sct")
    loaded = signcut.load(tmp_path / "p.sct")
    assert list(loaded) == ["luma", "chroma"]
    for name, sc in loaded.items():
        assert np.array_equal(sc.coef, res.planes[name].coef)
        assert all(np.array_equal(a, b) for a, b in zip(sc.signs, res.planes[name].signs))
    from safetensors import safe_open
    with safe_open(tmp_path / "p.sct", framework="numpy") as f:
        meta = f.metadata()
    info = json.loads(meta[image.META_KEY])
    assert info["shape"] == [37, 53, 3] and info["tile"] == [12, 12] and info["color"] == "ycbcr"
    assert [p["name"] for p in info["planes"]] == ["luma", "chroma"]
    assert np.array_equal(np.float32(info["planes"][0]["mean"]), res.means["luma"])


@pytest.mark.parametrize("ratio", [0.02, 0.05, 0.25])
def test_file_size_matches_nbytes(tmp_path, ratio):
    """On disk: a header (about 1.4 KB here, holding the means) plus the signs and
    coefficients, which are nbytes less the means, give or take a byte per mode."""
    res = image.compress(CAT, ratio=ratio, seed=0)
    path = tmp_path / "cat.sct"
    res.save(path)
    size, head = os.path.getsize(path), header_bytes(path)
    assert head < 2048
    payload = size - head
    assert payload <= 1.05 * res.nbytes
    assert abs(payload - (res.nbytes - 4 * 3)) <= 2 * len(res.planes)


def test_save_is_atomic(tmp_path):
    res = image.compress(picture(20, 20, 3), ratio=0.2, seed=0)
    target = tmp_path / "p.sct"
    target.write_bytes(b"old")
    with pytest.raises(OSError):
        res.save(tmp_path / "missing" / "p.sct")
    res.save(target)
    assert sorted(os.listdir(tmp_path)) == ["p.sct"]          # no temporary file left
    assert image.decode(target).cuts == res.cuts


def test_decode_rejects_other_files(tmp_path):
    plain = tmp_path / "plain.sct"
    signcut.save(plain, signcut.decompose(np.ones((8, 8), np.float32) + np.eye(8), width=2))
    with pytest.raises(signcut.FormatError, match="not a picture"):
        image.decode(plain)
    png = tmp_path / "x.png"
    Image.fromarray(picture(8, 8, 3)).save(png)
    assert not image.is_signcut_file(png)
    with pytest.raises(signcut.FormatError):
        image.decode(png)
    res = image.compress(picture(20, 20, 3), ratio=0.2, seed=0)
    good = tmp_path / "good.sct"
    res.save(good)
    assert image.is_signcut_file(good)
    data = good.read_bytes()
    (tmp_path / "cut.sct").write_bytes(data[:len(data) // 2])
    with pytest.raises(signcut.FormatError):
        image.decode(tmp_path / "cut.sct")


def _rewrite_info(path, out, change):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    info = json.loads(header["__metadata__"][image.META_KEY])
    change(info)
    header["__metadata__"][image.META_KEY] = json.dumps(info)
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    out.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])


@pytest.mark.parametrize("change", [
    lambda i: i.update(version=99),
    lambda i: i.update(mode="CMYK"),
    lambda i: i.update(shape=[20, 21, 3]),
    lambda i: i.update(shape=[20, 20]),
    lambda i: i.update(tile=[5, 5]),
    lambda i: i.update(color="rgb"),
    lambda i: i["planes"][0].update(mean=[1.0, 2.0]),
    lambda i: i["planes"][0].update(mean=["x"]),
    lambda i: i["planes"].pop(),
    lambda i: i.update(psnr="high"),
])
def test_decode_checks_the_metadata(tmp_path, change):
    res = image.compress(picture(20, 20, 3), ratio=0.2, tile=4, seed=0)
    res.save(tmp_path / "good.sct")
    _rewrite_info(tmp_path / "good.sct", tmp_path / "bad.sct", change)
    with pytest.raises(signcut.FormatError):
        image.decode(tmp_path / "bad.sct")
