"""Compress pictures with signed cuts.

    >>> from signcut import image
    >>> result = image.compress("cat.png", ratio=0.05, seed=0)   # 5% of the raw 8-bit pixels
    >>> result.psnr, result.nbytes, result.ratio
    >>> result.save("cat.sct")
    >>> image.decode("cat.sct").to_image().save("back.png")

How a picture is stored
-----------------------
The pixels are split into *plane groups*, each decomposed on its own by
:func:`signcut.decompose`:

* ``color="ycbcr"`` (default for colour pictures): ``luma`` (Y, one channel) and ``chroma``
  (Cb and Cr, two channels), JPEG's full-range BT.601 transform computed in floating point
  and inverted on decoding. Luma gets ``LUMA_SHARE`` (85%) of the budget. A sign cut puts
  the same magnitude on every channel of its group, so Y and CbCr are not put in one tensor.
* ``color="rgb"``: one group ``rgb`` of three channels.
* grey pictures: one group ``grey``; ``color`` does not matter.
* an alpha channel is the group ``alpha``. A constant alpha (an opaque RGBA picture) is
  stored exactly as its mean and costs 4 bytes and no cuts; any other alpha is decomposed
  like a grey picture and gets ``ALPHA_SHARE`` (a quarter) of the budget. Alpha is never
  stored losslessly otherwise: the file format holds sign cuts only.

Every group is centred first: the per-channel mean (float32) is subtracted and stored, so the
cuts do not spend budget on the overall level.

``tile=b`` (or ``(bh, bw)``) pads the group by edge replication to a multiple of the tile
(the original size is stored, decoding crops), reshapes it to ``(H/bh, bh, W/bw, bw, C)``,
permutes it to ``(H/bh, W/bw, bh, bw, C)`` and decomposes it as a matrix with one row per
block and one column per (pixel in the block, channel) (``decompose(blocks, shape=(H/bh *
W/bw, bh * bw * C))``: the SignCut's ``expand()`` gives the block array back). A cut is then
a sign pattern over the pixels of a block times a sign pattern over the blocks. On the
bundled cat at 5% this matrix of blocks (30.8 dB, about a second) is as good as the
five-mode tensor ``(H/4, W/4, 4, 4, 3)`` (30.9 dB) and 20 times faster: the tensor's cuts are
cheaper, so it makes many more of them. ``tile=None`` decomposes the ``(H, W, C)`` tensor
(an ``(H, W)`` matrix for one channel).

The defaults (``tile=12``, ``color="ycbcr"``) were picked by measuring the bundled cat at 5%
of its raw size: see ``benchmarks/bench_image.py`` and the README.

The file
--------
:meth:`ImageResult.save` writes a signcut file (``signcut.save`` of the mapping ``group name
-> SignCut``, which :func:`signcut.load` reads as a dict) with one extra metadata entry
(``save(..., metadata=)``): ``"signcut.image"``, a JSON object with the picture's shape,
mode, colour basis, tile, the float32 means of each group and the PSNR. Any safetensors
reader opens it.
"""
import json
import math
import numbers
import os
import warnings

import numpy as np
from PIL import Image

import signcut
from signcut import _core
from signcut._atomic import open_regular
from signcut._format import read_metadata, short_repr
from signcut._budget import signs_nbytes, width_for_bytes
from signcut._validate import check_memory

__all__ = ["compress", "decode", "ImageResult", "is_signcut_file", "DEFAULT_TILE",
           "DEFAULT_COLOR"]

DEFAULT_TILE = 12
DEFAULT_COLOR = "ycbcr"
LUMA_SHARE = 0.85          # of the colour budget (measured on the cat: 0.8..0.9 within 0.1 dB)
ALPHA_SHARE = 0.25         # of the whole budget, for an alpha channel that is not constant
META_KEY = "signcut.image"
META_VERSION = 1
COLORS = ("rgb", "ycbcr")

# JPEG's (JFIF) full-range BT.601 transform, without the +128 offset of the chroma (the
# groups are centred anyway).
_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114],
                        [-0.168735892, -0.331264108, 0.5],
                        [0.5, -0.418687589, -0.081312411]])
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


# ------------------------------------------------------------------ inputs
def _check_budget(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def _check_tile(tile, height, width):
    """None or (bh, bw), clamped to the picture's size."""
    if tile is None:
        return None
    if isinstance(tile, numbers.Integral) and not isinstance(tile, bool):
        tile = (tile, tile)
    try:
        bh, bw = tile
        if any(isinstance(b, bool) or not isinstance(b, numbers.Integral) for b in (bh, bw)):
            raise TypeError
    except (TypeError, ValueError):
        raise TypeError(f"tile must be None, an int or a pair of ints, got {tile!r}") from None
    if bh < 1 or bw < 1:
        raise ValueError(f"tile sizes must be positive, got {tile!r}")
    return (min(int(bh), height), min(int(bw), width))


def _from_pil(im):
    """uint8 (H, W, C) pixels and the mode ("L", "RGB" or "RGBA") of a PIL image."""
    if im.mode in ("L", "RGB", "RGBA"):
        mode = im.mode
    elif im.mode in ("1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        mode = "L"
    elif im.mode in ("LA", "La", "PA", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        mode = "RGBA"
    else:
        mode = "RGB"
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Pillow's convert("L") clips these to 0..255; scale 16-bit pictures down instead.
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        pixels = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)[..., None]
    else:
        pixels = np.asarray(im.convert(mode) if im.mode != mode else im, dtype=np.uint8)
        if pixels.ndim == 2:
            pixels = pixels[..., None]
    return np.ascontiguousarray(pixels), mode, tuple(pixels.shape[:2]) if mode == "L" \
        else tuple(pixels.shape)


def _bomb_check(width, height, what):
    """Refuse a picture a file declares above Pillow's decompression-bomb limit
    (PIL.Image.MAX_IMAGE_PIXELS, which Pillow only warns about up to twice that)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ValueError(f"{what} is a {width} x {height} picture ({width * height} pixels), "
                         f"above the decompression-bomb limit PIL.Image.MAX_IMAGE_PIXELS "
                         f"({limit}); raise that limit to read it")


def open_picture(path):
    """A picture file as a loaded PIL image (a regular file only, at most
    PIL.Image.MAX_IMAGE_PIXELS pixels: ValueError otherwise)."""
    with open_regular(path) as f:
        try:
            with warnings.catch_warnings():     # refused below instead
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(f)
        except Image.DecompressionBombError as exc:     # beyond twice the limit
            raise ValueError(f"{os.fspath(path)!r} is above the decompression-bomb limit "
                             f"PIL.Image.MAX_IMAGE_PIXELS: {exc}") from None
        with im:
            _bomb_check(im.width, im.height, repr(os.fspath(path)))
            im.load()
            return im.copy()


def _pixels(image):
    """(pixels uint8 (H, W, C), mode, shape to give back) of a path, PIL image or array."""
    if isinstance(image, (str, bytes, os.PathLike)):
        with open_picture(image) as im:
            pixels, mode, shape = _from_pil(im)
    elif isinstance(image, Image.Image):
        pixels, mode, shape = _from_pil(image)
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise TypeError(f"image arrays must be uint8, got {arr.dtype}; scale them to "
                            "0..255 and convert first")
        if arr.ndim == 2:
            arr = arr[..., None]
        elif not (arr.ndim == 3 and arr.shape[2] in (1, 3, 4)):
            raise ValueError(f"image arrays must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                             f"got shape {arr.shape}")
        shape = tuple(np.shape(image))
        pixels = np.ascontiguousarray(arr)
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"empty image of shape {pixels.shape[:2]}")
    return pixels, mode, shape


# ------------------------------------------------------------------ planes and layouts
def _groups(pixels, mode, color):
    """[(name, channel transform, share of the budget)] for the picture: a group's float32
    (H, W, c) values are ``pixels[..., :k] @ transform.T`` (see _group_values)."""
    eye = np.eye(pixels.shape[2])
    if mode == "L":
        groups = [("grey", eye[:1], 1.0)]
    elif color == "rgb":
        groups = [("rgb", eye[:3], 1.0)]
    else:
        groups = [("luma", _RGB_TO_YCC[:1], LUMA_SHARE),
                  ("chroma", _RGB_TO_YCC[1:], 1 - LUMA_SHARE)]
    if mode == "RGBA":
        alpha = pixels[..., 3]
        if (alpha == alpha.flat[0]).all():
            share = 0.0
        else:
            share = ALPHA_SHARE
            groups = [(n, g, s * (1 - share)) for n, g, s in groups]
        groups.append(("alpha", eye[3:], share))
    return groups


def _group_values(pixels, transform, tile):
    """One group's channels, edge-padded to a multiple of the tile: float32 (Hp, Wp, c),
    transformed a band of rows at a time in float64 (no float64 copy of the picture)."""
    h, w = pixels.shape[:2]
    k, c = transform.shape[1], transform.shape[0]
    hp, wp, _ = _padded_shape((h, w), tile, c)
    out = np.empty((hp, wp, c), np.float32)
    band = max(1, (1 << 20) // max(1, w))
    for i in range(0, h, band):
        j = min(i + band, h)
        out[i:j, :w] = pixels[i:j, :, :k] @ transform.T
    out[h:, :w] = out[h - 1:h, :w]                # edge replication
    out[:, w:] = out[:, w - 1:w]
    return out


def _to_layout(x, tile):
    """The centred group in the layout decomposed, and decompose's shape= argument."""
    h, w, c = x.shape
    if tile is None:
        return x, ((h, w) if c == 1 else None)
    bh, bw = tile
    blocks = np.ascontiguousarray(x.reshape(h // bh, bh, w // bw, bw, c).transpose(0, 2, 1, 3, 4))
    return blocks, (h // bh * (w // bw), bh * bw * c)


def _mode_dims(size, tile, channels):
    """The modes of a group's decomposition (what its cuts' signs run over)."""
    h, w = size
    if tile is None:
        return (h, w) if channels == 1 else (h, w, channels)
    bh, bw = tile
    return (-(-h // bh) * -(-w // bw), bh * bw * channels)


def _from_layout(y, tile, padded_shape):
    """Inverse of _to_layout on an expanded decomposition: (Hp, Wp, c) float32."""
    hp, wp, c = padded_shape
    if tile is None:
        return y.reshape(hp, wp, c)
    bh, bw = tile
    return y.reshape(hp // bh, wp // bw, bh, bw, c).transpose(0, 2, 1, 3, 4).reshape(hp, wp, c)


def _layout_shape(shape, tile, channels):
    """Shape of the array that expand() gives back for a group (checked on decoding)."""
    h, w = shape[:2]
    if tile is None:
        return (h, w, channels)
    bh, bw = tile
    return (-(-h // bh), -(-w // bw), bh, bw, channels)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


# ------------------------------------------------------------------ compress
def compress(image, *, ratio=None, bits_per_pixel=None, width=None, tile=DEFAULT_TILE,
             color=DEFAULT_COLOR, seed=None, n_threads=None, callback=None):
    """Compress a picture with signed cuts.

    Parameters
    ----------
    image : str, os.PathLike, PIL.Image.Image or uint8 array
        A file Pillow opens, a PIL image, or a uint8 array of shape (H, W), (H, W, 1),
        (H, W, 3) or (H, W, 4). Grey, RGB and RGBA are kept as such; other PIL modes are
        converted (palette and LA pictures to RGB or RGBA, 16-bit and float grey to 8 bits).
    ratio : float, optional
        Stored bytes (signs, coefficients and means) over the raw 8-bit pixels ``H*W*C``.
    bits_per_pixel : float, optional
        Stored bits over ``H*W`` (all channels together).
    width : int, optional
        The most cuts of each plane group.
    tile : None, int or (int, int), default 12
        Block size of the matrix of blocks (see the module docstring); clamped to the
        picture's size. None decomposes the ``(H, W, C)`` tensor.
    color : {"ycbcr", "rgb"}, default "ycbcr"
        Basis of the colour channels (ignored for grey pictures).
    seed, n_threads
        As in :func:`signcut.decompose` (one decomposition per plane group, each with ``seed``).
    callback : callable, optional
        ``callback(done, total)`` after each cut: ``done`` cuts of the ``total`` planned over
        all groups. Returning True stops (groups not started yet get no cuts).

    At least one of ratio, bits_per_pixel and width is required; the budget is the smallest.
    The means take 4 bytes per channel; the rest is split between the groups (luma 85% and
    chroma 15% of the colour budget; a varying alpha a quarter of everything), bytes a
    group cannot use going to the next one.

    Returns
    -------
    ImageResult
    """
    ratio = _check_budget(ratio, "ratio")
    bits_per_pixel = _check_budget(bits_per_pixel, "bits_per_pixel")
    if width is not None:
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 0:
            raise ValueError(f"width must be a non-negative integer, got {width!r}")
        width = int(width)
    if ratio is None and bits_per_pixel is None and width is None:
        raise ValueError("give a budget: ratio, bits_per_pixel or width")
    if color not in COLORS:
        raise ValueError(f"color must be one of {COLORS}, got {color!r}")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")
    pixels, mode, shape = _pixels(image)
    h, w, c = pixels.shape
    tile = _check_tile(tile, h, w)
    groups = _groups(pixels, mode, color)

    budgets = []
    if ratio is not None:
        budgets.append(ratio * h * w * c)
    if bits_per_pixel is not None:
        budgets.append(bits_per_pixel * h * w / 8)
    budget = min(budgets) if budgets else None
    if budget is not None and budget < 4 * c:
        raise ValueError(f"a budget of {budget:.4g} bytes does not even hold the {c} channel "
                         f"means ({4 * c} bytes) of a {w} x {h} picture")

    # Working memory: the pixels as float32 for one group at a time (padded, then laid out),
    # and decompose's float32 and float16 copies of it.
    widest = max(g[1].shape[0] for g in groups)
    hp, wp, _ = _padded_shape((h, w), tile, widest)
    check_memory(20 * hp * wp * widest, f"compressing a {w} x {h} picture")

    # Plan: widths from the shapes alone, before any cut is made.
    plans, spent, allotted = [], 0, 0.0
    for name, transform, share in groups:
        channels = transform.shape[0]
        mode_dims = _mode_dims((h, w), tile, channels)
        if budget is None:
            n = width
        else:
            allotted += share * (budget - 4 * c)
            n = width_for_bytes(allotted - spent, mode_dims)
            if width is not None:
                n = min(n, width)
        if share == 0:
            n = 0           # a constant alpha: its mean is exact
        spent += signs_nbytes(n, mode_dims)
        plans.append((name, transform, n))

    # A group stops once its picture is exact after rounding to 8 bits: every entry of the
    # decoded pixels within 1/2, which an error of norm 1/2 / (the largest row sum of the
    # inverse colour transform * sqrt(groups)) guarantees.
    inverse = _YCC_TO_RGB if color == "ycbcr" and mode != "L" else np.eye(1)
    lossless = 0.5 / (np.abs(inverse).sum(axis=1).max() * np.sqrt(len(plans)))
    total = sum(p[-1] for p in plans)
    planes, info_planes, done, stop = {}, [], 0, False
    for name, transform, n in plans:
        if stop:
            n = 0

        def progress(k, rel_error, _offset=done):
            return bool(callback(_offset + k, total)) if callback is not None else False

        x = _group_values(pixels, transform, tile)
        mean = x.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
        x -= mean
        arr, tshape = _to_layout(x, tile)
        del x
        norm = float(np.sqrt(_core.sumsq(arr.reshape(-1))))
        if n > 0 and norm > lossless:
            res = signcut.decompose(arr, width=n, seed=seed, n_threads=n_threads,
                                    callback=progress if callback is not None else None,
                                    shape=tshape, rtol=lossless / norm)
            stop = res.stopped_by == "callback"
        else:
            res = _no_cuts(arr, tshape)
        res.orig_dtype = np.dtype(np.uint8)      # the ratio of a group is against 8-bit pixels
        done += res.width
        planes[name] = res
        info_planes.append({"name": name, "channels": int(transform.shape[0]),
                            "mean": [float(m) for m in mean]})
    info = {"version": META_VERSION, "shape": list(shape), "mode": mode,
            "color": "grey" if mode == "L" else color,
            "tile": None if tile is None else list(tile), "planes": info_planes, "psnr": None}
    return ImageResult(planes, info, reference=pixels)


# ------------------------------------------------------------------ result
class ImageResult:
    """A compressed picture: one :class:`signcut.SignCut` per plane group plus the means.

    Attributes
    ----------
    planes : dict of str to SignCut
        The decompositions (``grey``, ``rgb``, or ``luma`` and ``chroma``; ``alpha``).
    shape : tuple of int
        Shape of :meth:`to_array` (that of the input array: (H, W) or (H, W, 1) for grey).
    mode : str
        "L", "RGB" or "RGBA".
    color : str
        "grey", "rgb" or "ycbcr".
    tile : tuple of int or None
        Block size of the layout.
    means : dict of str to float32 array
        The per-channel means of each group.
    """

    def __init__(self, planes, info, reference=None):
        self.planes = dict(planes)
        self.info = info
        self.shape = tuple(info["shape"])
        self.mode = info["mode"]
        self.color = info["color"]
        self.tile = None if info["tile"] is None else tuple(info["tile"])
        self.means = {p["name"]: np.array(p["mean"], dtype=np.float32) for p in info["planes"]}
        self._reference = reference
        self._array = None
        self._psnr = info.get("psnr")

    # ---------------------------------------------------------- sizes
    @property
    def size(self):
        """(width, height) in pixels, as PIL's ``Image.size``."""
        return (self.shape[1], self.shape[0])

    @property
    def channels(self):
        return {"L": 1, "RGB": 3, "RGBA": 4}[self.mode]

    @property
    def cuts(self):
        """Number of cuts over all plane groups."""
        return sum(p.width for p in self.planes.values())

    @property
    def nbytes(self):
        """Everything stored: signs and coefficients of every group, plus 4 bytes per mean."""
        return sum(p.nbytes for p in self.planes.values()) + 4 * self.channels

    @property
    def raw_nbytes(self):
        """Bytes of the picture as raw 8-bit pixels."""
        return self.shape[0] * self.shape[1] * self.channels

    @property
    def ratio(self):
        """``nbytes`` over the raw 8-bit pixels."""
        return self.nbytes / self.raw_nbytes

    @property
    def bits_per_pixel(self):
        """``8 * nbytes`` over ``H * W``."""
        return 8 * self.nbytes / (self.shape[0] * self.shape[1])

    # ---------------------------------------------------------- pixels
    def to_float(self):
        """The reconstruction as float32 (H, W, C), before rounding and clipping.

        Memory: the answer and one group's expanded planes at a time (about 4 C + 8 bytes per
        pixel), checked against the memory available first (MemoryError)."""
        h, w = self.shape[:2]
        widest = max(p["channels"] for p in self.info["planes"])
        hp, wp, _ = _padded_shape((h, w), self.tile, widest)
        check_memory(4 * self.channels * h * w + 8 * widest * hp * wp,
                     f"decoding a {w} x {h} picture")
        x = np.empty((h, w, self.channels), np.float32)
        first = 0
        for p in self.info["planes"]:
            name, c = p["name"], p["channels"]
            padded = _padded_shape((h, w), self.tile, c)
            x[..., first:first + c] = _from_layout(self.planes[name].expand(), self.tile,
                                                   padded)[:h, :w]
            x[..., first:first + c] += self.means[name]
            first += c
        if self.color == "ycbcr":                  # a band of rows at a time, in float64
            band = max(1, (1 << 20) // w)
            for i in range(0, h, band):
                x[i:i + band, :, :3] = x[i:i + band, :, :3] @ _YCC_TO_RGB.T
        return x

    def to_array(self):
        """The reconstruction as uint8, of shape ``shape`` (rounded and clipped)."""
        if self._array is None:
            x = self.to_float()
            np.rint(x, out=x)
            np.clip(x, 0, 255, out=x)
            self._array = x.astype(np.uint8).reshape(self.shape)
        return self._array.copy()

    def to_image(self):
        """The reconstruction as a PIL image of mode ``mode``."""
        arr = self.to_array()
        return Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)

    @property
    def psnr(self):
        """PSNR in dB of :meth:`to_array` against the input (all channels, alpha included);
        inf when they are equal. Read from the file for a decoded picture (None if unknown,
        e.g. a truncation of a decoded picture)."""
        if self._psnr is None and self._reference is not None:
            self._psnr = _psnr(self._reference.reshape(-1), self.to_array().reshape(-1))
        return self._psnr

    # ---------------------------------------------------------- progressive views
    def truncate(self, k):
        """The first ``k`` cuts over all groups, shared out in proportion to each group's
        cuts: a coarser picture. ``k`` from 0 to :attr:`cuts`."""
        k = int(k)
        total = self.cuts
        if not 0 <= k <= total:
            raise ValueError(f"k must be in [0, {total}], got {k}")
        names = list(self.planes)
        widths = [self.planes[n].width for n in names]
        exact = [k * wd / total if total else 0.0 for wd in widths]
        keep = [int(math.floor(e)) for e in exact]
        order = sorted(range(len(names)), key=lambda i: keep[i] - exact[i])
        for i in order[:k - sum(keep)]:
            keep[i] += 1
        planes = {n: self.planes[n].truncate(kk) for n, kk in zip(names, keep)}
        info = dict(self.info, psnr=None)
        return ImageResult(planes, info, reference=self._reference)

    def truncate_to(self, ratio):
        """The longest truncation whose :attr:`ratio` is at most ``ratio``."""
        lo, hi = 0, self.cuts
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.truncate(mid).ratio <= ratio:
                lo = mid
            else:
                hi = mid - 1
        return self.truncate(lo)

    # ---------------------------------------------------------- files
    def save(self, path):
        """Write the signcut file (atomically: a temporary file in the same folder, then
        ``os.replace``; on any error ``path`` is left as it was)."""
        info = dict(self.info, psnr=_json_float(self.psnr))
        signcut.save(path, self.planes, metadata={META_KEY: json.dumps(info, separators=(",", ":"))})

    def __repr__(self):
        psnr = self.psnr
        return (f"ImageResult({self.mode} {self.shape[1]}x{self.shape[0]}, color={self.color}, "
                f"tile={self.tile}, cuts={self.cuts}, nbytes={self.nbytes}, "
                f"ratio={self.ratio:.4g}, psnr={'?' if psnr is None else f'{psnr:.2f}'})")


def _json_float(x):
    """A PSNR for JSON: a number, "inf" (JSON has no infinity) or None."""
    if x is None:
        return None
    return "inf" if math.isinf(x) else float(x)


def _no_cuts(arr, tshape):
    """A decomposition of ``arr`` without any cut (as decompose would record it)."""
    tensor_shape = tshape if tshape is not None else arr.shape
    tensorize = None if tshape is None else {"shape": list(arr.shape),
                                             "axes": list(range(len(tshape)))}
    signs = [np.zeros((0, -(-d // 64)), np.uint64) for d in tensor_shape]
    return signcut.SignCut(tensor_shape, signs, np.zeros(0, np.float32),
                           norm=float(np.linalg.norm(arr)), tensorize=tensorize)


def _padded_shape(size, tile, channels):
    h, w = size
    if tile is None:
        return (h, w, channels)
    bh, bw = tile
    return (-(-h // bh) * bh, -(-w // bw) * bw, channels)


# ------------------------------------------------------------------ decode
def is_signcut_file(path):
    """Whether ``path`` starts like a safetensors file written by signcut (it does not check
    the rest: :func:`decode` does)."""
    try:
        with open_regular(path) as f:
            head = f.read(64)
    except OSError:
        return False
    return len(head) >= 10 and head[8:9] == b"{" and b'"' in head[9:]


def _check_info(info, planes):
    bad = signcut.FormatError
    if not isinstance(info, dict):
        raise bad(f"the image metadata is not a JSON object: {short_repr(info)}")
    if info.get("version") != META_VERSION:
        raise bad(f"unknown image metadata version {short_repr(info.get('version'))}")
    shape, mode, color, tile = (info.get(k) for k in ("shape", "mode", "color", "tile"))
    if mode not in ("L", "RGB", "RGBA"):
        raise bad(f"unknown image mode {short_repr(mode)}")
    c = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    if (not isinstance(shape, list) or len(shape) not in (2, 3)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
            or (len(shape) == 2 and c != 1) or (len(shape) == 3 and shape[2] != c)):
        raise bad(f"bad image shape {short_repr(shape)} for mode {mode}")
    try:
        _bomb_check(shape[1], shape[0], "the file")
    except ValueError as exc:
        raise bad(str(exc)) from None
    if color not in ("grey", "rgb", "ycbcr") or (color == "grey") != (mode == "L"):
        raise bad(f"bad colour basis {short_repr(color)} for mode {mode}")
    if tile is not None and not (isinstance(tile, list) and len(tile) == 2 and all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in tile)):
        raise bad(f"bad tile {short_repr(tile)}")
    expected = {"grey": [("grey", 1)], "rgb": [("rgb", 3)],
                "ycbcr": [("luma", 1), ("chroma", 2)]}[color]
    if mode == "RGBA":
        expected = expected + [("alpha", 1)]
    entries = info.get("planes")
    if not isinstance(entries, list) or [(p.get("name"), p.get("channels")) if isinstance(p, dict)
                                         else None for p in entries] != expected:
        raise bad(f"image planes {short_repr(entries)} do not match mode {mode} in basis {color}")
    if not isinstance(planes, dict) or list(planes) != [n for n, _ in expected]:
        raise bad(f"the decompositions {list(planes) if isinstance(planes, dict) else planes!r} "
                  f"do not match the image planes {[n for n, _ in expected]}")
    for p in entries:
        mean = p.get("mean")
        if (not isinstance(mean, list) or len(mean) != p["channels"]
                or not all(isinstance(m, (int, float)) and not isinstance(m, bool)
                           and math.isfinite(m) for m in mean)):
            raise bad(f"bad means {short_repr(mean)} of plane {p['name']!r}")
        sc = planes[p["name"]]
        want = _layout_shape(shape, None if tile is None else tuple(tile), p["channels"])
        if tuple(sc.shape) != want:
            raise bad(f"plane {p['name']!r} has shape {sc.shape}, expected {want} for a "
                      f"{shape[1]} x {shape[0]} picture with tile {tile}")
    psnr = info.get("psnr")
    if psnr is not None and psnr != "inf" and (isinstance(psnr, bool)
                                               or not isinstance(psnr, (int, float))):
        raise bad(f"bad psnr {short_repr(psnr)}")
    if psnr is not None:
        info["psnr"] = float(psnr)


def decode(path):
    """Read a file written by :meth:`ImageResult.save`.

    Returns an :class:`ImageResult` (``to_image()``, ``to_array()``, ``psnr`` as stored,
    ``nbytes``, ``truncate``). Raises :class:`signcut.FormatError` for a file that is not a
    signcut picture, ``OSError`` when it cannot be read.
    """
    meta = read_metadata(path)
    if META_KEY not in meta:
        raise signcut.FormatError(f"{os.fspath(path)!r} is a signcut file but not a picture "
                                  f"(no {META_KEY!r} metadata)")
    try:
        info = json.loads(meta[META_KEY])
    except (TypeError, ValueError, RecursionError) as exc:
        raise signcut.FormatError(f"the {META_KEY!r} metadata is not valid JSON: {exc}") from None
    planes = signcut.load(path)
    _check_info(info, planes)
    return ImageResult(planes, info)
