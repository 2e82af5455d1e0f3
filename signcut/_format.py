"""Saving and loading signed cut decompositions: the ``.safetensors`` file format.

A file is a plain `safetensors <https://github.com/huggingface/safetensors>`_ file, so any
safetensors reader (``safetensors.numpy.load_file``) opens it. It holds one decomposition or
a mapping ``name -> decomposition``. For a decomposition called ``NAME`` of ``width`` cuts and
shape ``(d_0, ..., d_{k-1})`` it has the tensors

``NAME/signs.{a}`` (one per mode ``a``)
    uint8, 1-D, length ``ceil(width * d_a / 8)``: the signs of all cuts as ONE dense bit
    stream, without padding between cuts. Bit ``t = j * d_a + i`` (entry ``i`` of cut ``j``)
    is bit ``t % 8`` (least significant first, ``bitorder="little"``) of byte ``t // 8``; a set
    bit means -1. The unused high bits of the last byte are zero.
``NAME/coef``
    float32, ``(width,)``: the coefficient of each cut.
``NAME/errors``
    float64, ``(width,)``: the relative error after each cut, only when saved with
    ``history=True`` (metadata ``"history": true``).
``NAME/outliers.index`` and ``NAME/outliers.values`` (format version 2)
    Only for a decomposition with a sparse part (``decompose(..., outliers=q)``) of
    ``count`` entries: uint32 (uint64 when the array has 2**32 entries or more),
    ``(count,)``, strictly increasing flat C-order indices into the array's shape (before
    any tensorization); float16, ``(count,)``, the entries divided by ``2**exponent``
    (float32 in format version 3, ``"values": "F32"``: the sparse part of a SignCut derived
    by arithmetic, whose entries float16 would round).
``NAME/scales.{a}`` (format version 4)
    Only for the modes with a scale vector (``decompose(..., scales=...)`` or
    ``col_weights=``): float16 (or float32, ``"F32"`` in the metadata's ``scales`` list),
    ``(d_a,)``, the vector that multiplies mode ``a``'s signs.

Everything else lives in the header's ``__metadata__`` (string -> string):

``format``: ``"signcut"``; ``format_version``: ``"1"``, or ``"2"`` when a decomposition
has a sparse part, ``"3"`` when one has float32 values, ``"4"`` when one has scales or
errors in a weighted norm (older versions are read as before); ``container``: ``"single"`` (``load``
returns a :class:`SignCut`) or ``"mapping"`` (``load`` returns a dict); ``decompositions``: a
JSON object ``{NAME: {"shape": [...], "width": w, "orig_dtype": "float32", "norm": x | null,
"rel_error": e | null, "history": false, "tensorize": null | {"shape": [...], "axes": [...]},
"outliers": null | {"count": k, "exponent": e, "error": x | null}}}`` (``outliers`` from
version 2; ``error`` is the relative error of the sparse part alone; version 3 adds
``"values": "F32"`` for float32 values; version 4 adds ``"scales": [null | "F16" | "F32",
...]``, one entry per mode, when some mode has scales, and ``"error_norm": "col_weights"``
when ``norm`` and the errors are in a column-weighted norm)
in the order of the mapping (``shape`` is the shape of the modes, ``rel_error`` the final
relative error); ``signs``: a reminder of the bit layout (informative only). The payload is
``sum_a ceil(width * d_a / 8) + 4 * width`` bytes (plus ``8 * width`` with the history,
plus the sparse part's ``(4 or 8) * count + 2 * count``, as in :attr:`SignCut.nbytes`):
:attr:`SignCut.nbytes` (``ceil(width * sum(shape) / 8) + 4 * width``) exactly when every
``width * d_a`` is a multiple of 8, else at most ``ndim - 1`` bytes more (each mode's stream
rounds up to a whole byte on its own).

``load`` parses and checks the header itself before it allocates anything and checks every
declared size against the size of the file, so a corrupt, truncated or hostile file raises
:class:`FormatError` instead of triggering a huge allocation.
"""
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from signcut import _safetensors as st
from signcut._atomic import open_regular
from signcut._safetensors import is_int as _is_int, short_repr
from signcut._result import ERROR_NORMS, Outliers, SignCut, index_dtype, words

__all__ = ["save", "load", "read_metadata", "FormatError"]

FORMAT_NAME = "signcut"
FORMAT_VERSION = 4       # the newest; a file is written in the oldest that holds its contents
READ_VERSIONS = tuple(str(v) for v in range(1, FORMAT_VERSION + 1))
SINGLE_NAME = "signcut"          # the NAME used in a file saved from one SignCut
MAX_NDIM = 32
MAX_NAME_LENGTH = 256
_CHUNK_BITS = 1 << 24            # bits unpacked at once when converting signs
_SIGNS_NOTE = ("bit t = j*d + i of NAME/signs.a (bit t%8 of byte t//8, least significant "
               "first) is entry i of cut j on mode a; 1 means -1")
_DTYPES = {"U8": (np.dtype("u1"), 1), "F16": (np.dtype("<f2"), 2), "U32": (np.dtype("<u4"), 4),
           "F32": (np.dtype("<f4"), 4), "U64": (np.dtype("<u8"), 8), "F64": (np.dtype("<f8"), 8)}


class FormatError(ValueError):
    """A file is not a valid signcut file: corrupt, truncated or inconsistent."""


def _index_code(e):
    return "U32" if index_dtype(math.prod(e["shape"])) == np.uint32 else "U64"


class _Stored(NamedTuple):
    """One kind of tensor a decomposition stores, as ``NAME/<name>``; ``{a}`` in the name
    makes one per mode ``a``. Each field but the name is a function of the decomposition's
    metadata entry ``e`` (and the mode ``a``), ``array`` of the SignCut being saved."""
    name: str
    modes: Callable      # e -> the modes (or [None]) that have it; [] when absent
    code: Callable       # e, a -> dtype code
    length: Callable     # e, a -> entries
    version: Callable    # code -> the first format version that can hold it
    array: Callable      # SignCut, a -> the array to store


def _all_modes(e):
    return range(len(e["shape"]))


def _sparse(e):
    return [None] if e["outliers"] is not None else []


# Everything a decomposition stores: saving, the check of a file's tensors against its
# metadata, the version a file needs and loading all follow this table.
_TENSORS = (
    _Stored("errors", lambda e: [None] if e["history"] else [], lambda e, a: "F64",
            lambda e, a: e["width"], lambda code: 1, lambda sc, a: sc.errors),
    _Stored("coef", lambda e: [None], lambda e, a: "F32", lambda e, a: e["width"],
            lambda code: 1, lambda sc, a: sc.coef),
    _Stored("signs.{a}", _all_modes, lambda e, a: "U8",
            lambda e, a: -(-e["width"] * e["shape"][a] // 8), lambda code: 1,
            lambda sc, a: _rows_to_stream(sc.signs[a], sc.tensor_shape[a])),
    _Stored("outliers.index", _sparse, lambda e, a: _index_code(e),
            lambda e, a: e["outliers"]["count"], lambda code: 2,
            lambda sc, a: sc.outliers.index),
    _Stored("outliers.values", _sparse, lambda e, a: e["outliers"].get("values", "F16"),
            lambda e, a: e["outliers"]["count"], lambda code: 3 if code == "F32" else 2,
            lambda sc, a: sc.outliers.values),
    _Stored("scales.{a}", lambda e: [a for a, c in enumerate(e["scales"] or ()) if c is not None],
            lambda e, a: e["scales"][a], lambda e, a: e["shape"][a], lambda code: 4,
            lambda sc, a: sc.scales[a]),
)
# Metadata fields that need a format version of their own: (field, present in e, version).
_FIELDS = (("error_norm", lambda e: e["error_norm"] != "frobenius", 4),)


def _versions(name, e):
    """``(what, the first format version that holds it)`` for everything entry ``e`` of the
    decomposition ``name`` stores."""
    return ([(f"tensor {tname!r} ({code})", row.version(code))
             for tname, row, _, code, _ in _stored(name, e)]
            + [(f"{name!r}: {field}", v) for field, present, v in _FIELDS if present(e)])


def _stored(name, e):
    """``(tensor name, row, mode, dtype code, length)`` of every tensor of the decomposition
    ``name`` with metadata entry ``e``, in the table's order."""
    return [(f"{name}/{row.name.format(a=a)}", row, a, row.code(e, a), row.length(e, a))
            for row in _TENSORS for a in row.modes(e)]


# ------------------------------------------------------------------ sign conversion
def _rows_to_stream(bits, d):
    """Padded ``(width, ceil(d/64))`` uint64 rows -> dense little-endian bit stream (uint8)."""
    width = bits.shape[0]
    as_bytes = np.ascontiguousarray(bits, dtype="<u8").view(np.uint8).reshape(width, 8 * words(d))
    if d % 8 == 0:
        return np.ascontiguousarray(as_bytes[:, :d // 8]).reshape(-1)
    out = np.empty(-(-width * d // 8), np.uint8)
    step = max(8, _CHUNK_BITS // d // 8 * 8)     # a multiple of 8: every block starts on a byte
    for j0 in range(0, width, step):             # blocks of many cuts, not one cut at a time
        flags = np.unpackbits(as_bytes[j0:j0 + step], axis=1, count=d, bitorder="little")
        packed = np.packbits(flags.reshape(-1), bitorder="little")
        out[j0 * d // 8:j0 * d // 8 + packed.size] = packed
    return out


def _stream_to_rows(stream, width, d):
    """Dense bit stream of ``width * d`` bits -> padded ``(width, ceil(d/64))`` uint64 rows."""
    rows = np.zeros((width, 8 * words(d)), np.uint8)
    if d % 8 == 0:
        rows[:, :d // 8] = stream.reshape(width, d // 8)
    else:
        step = max(8, _CHUNK_BITS // d // 8 * 8)
        for j0 in range(0, width, step):
            n = min(step, width - j0)
            chunk = stream[j0 * d // 8:-(-(j0 + n) * d // 8)]
            flags = np.unpackbits(chunk, count=n * d, bitorder="little").reshape(n, d)
            rows[j0:j0 + n, :-(-d // 8)] = np.packbits(flags, axis=1, bitorder="little")
    return rows.view("<u8").astype(np.uint64, copy=False)


# ------------------------------------------------------------------ save
def _check_name(name):
    if not isinstance(name, str):
        raise TypeError(f"decomposition names must be str, got {type(name).__name__}")
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise ValueError(f"decomposition names must have 1 to {MAX_NAME_LENGTH} characters, "
                         f"got {short_repr(name)}")
    if "/" in name or not name.isprintable():
        raise ValueError(f"decomposition names may not contain '/' or non-printable "
                         f"characters, got {short_repr(name)}")


def _dtype_name(dtype):
    for text in (dtype.name, dtype.str):
        try:
            if _parse_dtype(text) == dtype:
                return text
        except (TypeError, ValueError):
            pass
    raise ValueError(f"orig_dtype {dtype} cannot be stored")


_EXTRA_DTYPES = ("bfloat16",)     # real dtypes from ml_dtypes, where it is installed
_DTYPE_NAME = re.compile(r"[<>=|]?[A-Za-z][A-Za-z0-9]{0,31}")


def _parse_dtype(text):
    if not isinstance(text, str) or not _DTYPE_NAME.fullmatch(text):
        raise TypeError(f"not the name of a scalar dtype: {short_repr(text)}")
    try:
        return np.dtype(text)
    except TypeError:
        try:                                   # bfloat16 and friends, when available
            import ml_dtypes
        except ImportError:
            raise TypeError(f"unknown dtype {short_repr(text)}") from None
        kind = getattr(ml_dtypes, text, None)
        if kind is None:
            raise TypeError(f"unknown dtype {short_repr(text)}") from None
        return np.dtype(kind)


def _encode(name, obj, history):
    """Metadata entry, tensors ``(name, dtype code, array)`` and the format version needed,
    of one SignCut."""
    if not isinstance(obj, SignCut):
        raise TypeError(f"can only save SignCut objects, got {type(obj).__name__} for {name!r}")
    shape = tuple(int(d) for d in obj.tensor_shape)   # the modes the signs belong to
    width = int(obj.width)
    if not 1 <= len(shape) <= MAX_NDIM or min(shape) < 1:
        raise ValueError(f"{name!r}: cannot save shape {shape}")
    errors = np.asarray(obj.errors)
    if np.shape(obj.coef) != (width,) or errors.shape != (width,):
        raise ValueError(f"{name!r}: coef and errors must have shape ({width},)")
    if len(obj.signs) != len(shape):
        raise ValueError(f"{name!r}: {len(obj.signs)} sign arrays for a {len(shape)}-D shape")
    for a, (bits, d) in enumerate(zip(obj.signs, shape)):
        bits = np.asarray(bits)
        if bits.dtype != np.uint64 or bits.shape != (width, words(d)):
            raise ValueError(f"{name!r}: signs of mode {a} must be uint64 of shape "
                             f"{(width, words(d))}, got {bits.dtype} {bits.shape}")
        if d % 64 and width and (bits[:, -1] >> np.uint64(d % 64)).any():
            raise ValueError(f"{name!r}: signs of mode {a} have bits set beyond entry {d}")
    tensorize = getattr(obj, "tensorize", None)
    try:
        json.dumps(tensorize)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name!r}: tensorize must be JSON-serialisable: {exc}") from None
    final = float(errors[-1]) if width and math.isfinite(errors[-1]) else None
    meta = {"shape": list(shape), "width": width, "orig_dtype": _dtype_name(obj.orig_dtype),
            "norm": None if obj.norm is None else float(obj.norm), "rel_error": final,
            "history": bool(history), "tensorize": tensorize}
    outliers = getattr(obj, "outliers", None)
    if outliers is not None:
        meta["outliers"] = {"count": len(outliers), "exponent": int(outliers.exponent),
                            "error": outliers.error}
        if outliers.values.dtype == np.float32:
            meta["outliers"]["values"] = "F32"
    scales = getattr(obj, "scales", None) or ()
    if any(v is not None for v in scales):
        meta["scales"] = [None if v is None else "F16" if v.dtype == np.float16 else "F32"
                          for v in scales]
    if getattr(obj, "error_norm", "frobenius") != "frobenius":
        meta["error_norm"] = obj.error_norm
    entry = {**meta, "outliers": meta.get("outliers"), "scales": meta.get("scales"),
             "error_norm": meta.get("error_norm", "frobenius")}
    tensors = [(tname, code, np.ascontiguousarray(row.array(obj, a), dtype=_DTYPES[code][0]))
               for tname, row, a, code, _ in _stored(name, entry)]
    return meta, tensors, max(v for _, v in _versions(name, entry))


_RESERVED_KEYS = ("format", "format_version", "container", "decompositions", "signs")


def _check_extra(metadata):
    """Extra ``__metadata__`` entries of an application (str -> str, not the reserved keys)."""
    extra = dict(metadata or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str, got {short_repr(key)}: {type(value).__name__}")
        if key in _RESERVED_KEYS:
            raise ValueError(f"metadata key {key!r} is reserved by the signcut format")
    return extra


def _build_header(obj, history=False, metadata=None):
    if isinstance(obj, SignCut):
        container, items = "single", [(SINGLE_NAME, obj)]
    elif isinstance(obj, Mapping):
        container, items = "mapping", list(obj.items())
        for name, _ in items:
            _check_name(name)
    else:
        raise TypeError(f"save expects a SignCut or a mapping name -> SignCut, "
                        f"got {type(obj).__name__}")
    metas, parts, version = {}, [], 1
    for name, item in items:
        metas[name], tensors, needs = _encode(name, item, history)
        parts.extend(tensors)
        version = max(version, needs)
    metadata = {"format": FORMAT_NAME, "format_version": str(version),
                "container": container,
                "decompositions": json.dumps(metas, separators=(",", ":")),
                "signs": _SIGNS_NOTE, **_check_extra(metadata)}
    parts.sort(key=lambda t: -_DTYPES[t[1]][1])    # widest first: every tensor stays aligned
    head = st.encode_header([(tname, code, [array.size]) for tname, code, array in parts],
                            metadata)
    return head, [array for _, _, array in parts]


def save(path, obj, *, history=False, metadata=None):
    """Save a decomposition, or a mapping of them, to a ``.safetensors`` file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination. It is written atomically: the data go to a temporary file in the same
        folder, which then replaces ``path``; on any error ``path`` is left as it was and the
        temporary file is removed.
    obj : SignCut or mapping of str to SignCut
        What to save. Names are 1 to 256 printable characters without ``'/'``. The mapping
        order is kept. :func:`load` gives back a SignCut for a SignCut and a dict for a mapping.
    history : bool
        Also store the error after every cut (8 bytes per cut). By default only the final
        error is kept (in the metadata), so the file holds just the signs and coefficients.
    metadata : mapping of str to str, optional
        Extra entries for the file's ``__metadata__`` (an application's own fields, such as
        the picture layout of :mod:`signcut.image`); :func:`read_metadata` gives them back.

    The layout is described in :mod:`signcut._format`: one dense uint8 bit stream per mode
    (``NAME/signs.{a}``), ``NAME/coef`` (float32) and, with the history, ``NAME/errors``
    (float64), the rest as JSON in the safetensors metadata. Raises ``TypeError`` or
    ``ValueError`` for objects that cannot be saved and ``OSError`` when the folder cannot be
    written.
    """
    path = os.fspath(path)
    head, tensors = _build_header(obj, history, metadata)   # every check before the disk

    st.write(path, head, lambda: tensors)


# ------------------------------------------------------------------ load
def _parse_metadata(header):
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError("missing or invalid __metadata__ (a map of strings is required)")
    if meta.get("format") != FORMAT_NAME:
        raise FormatError(f"not a signcut file (format {short_repr(meta.get('format'))})")
    version = meta.get("format_version")
    if version not in READ_VERSIONS:
        raise FormatError(f"unknown format version {short_repr(version)} "
                          f"(this signcut reads versions {', '.join(READ_VERSIONS)})")
    container = meta.get("container")
    if container not in ("single", "mapping"):
        raise FormatError(f"unknown container {short_repr(container)}")
    if "decompositions" not in meta:
        raise FormatError("metadata has no 'decompositions' entry")
    decomps = st.parse_json(meta["decompositions"], "metadata 'decompositions'", FormatError)
    if not isinstance(decomps, dict):
        raise FormatError("metadata 'decompositions' is not a JSON object")
    if container == "single" and list(decomps) != [SINGLE_NAME]:
        raise FormatError(f"a single decomposition must be named {SINGLE_NAME!r}, "
                          f"got {short_repr(list(decomps))}")
    entries = {}
    for name, entry in decomps.items():
        try:
            _check_name(name)
        except (TypeError, ValueError) as exc:
            raise FormatError(str(exc)) from None
        entries[name] = _parse_entry(name, entry)
        for what, needs in _versions(name, entries[name]):
            if needs > int(version):
                raise FormatError(f"{what} (from format version {needs}) in a version "
                                  f"{version} file")
    return container, entries


def _parse_entry(name, entry):
    if not isinstance(entry, dict):
        raise FormatError(f"{name!r}: metadata entry is not a JSON object")
    for key in ("shape", "width", "orig_dtype", "norm"):
        if key not in entry:
            raise FormatError(f"{name!r}: metadata has no {key!r}")
    shape, width = entry["shape"], entry["width"]
    if not isinstance(shape, list) or not shape:
        raise FormatError(f"{name!r}: shape must be a non-empty list, got {short_repr(shape)}")
    if len(shape) > MAX_NDIM:
        raise FormatError(f"{name!r}: too many dims ({len(shape)} > {MAX_NDIM})")
    if not all(_is_int(d) and d >= 1 for d in shape):
        raise FormatError(f"{name!r}: shape must hold positive integers, got {short_repr(shape)}")
    if math.prod(shape) >= 2**62:      # a width-0 entry has no data to bound its dims
        raise FormatError(f"{name!r}: shape {short_repr(shape)} has too many entries")
    if not _is_int(width) or width < 0:
        raise FormatError(f"{name!r}: width must be a non-negative integer, got {short_repr(width)}")
    if not isinstance(entry["orig_dtype"], str):
        raise FormatError(f"{name!r}: orig_dtype must be a string")
    try:
        orig_dtype = _parse_dtype(entry["orig_dtype"])
    except Exception as exc:        # numpy parses the untrusted string: any failure is ours
        raise FormatError(f"{name!r}: bad orig_dtype {short_repr(entry['orig_dtype'])}: {exc}") from None
    if orig_dtype.kind not in "biufc" and orig_dtype.name not in _EXTRA_DTYPES:
        raise FormatError(f"{name!r}: orig_dtype {short_repr(entry['orig_dtype'])} is not a "
                          f"numeric dtype")
    norm = entry["norm"]
    if norm is not None and (isinstance(norm, bool) or not isinstance(norm, (int, float))):
        raise FormatError(f"{name!r}: norm must be a number or null, got {short_repr(norm)}")
    if _is_int(norm):
        try:
            norm = float(norm)
        except OverflowError:
            raise FormatError(f"{name!r}: norm {short_repr(norm)} is out of range") from None
    rel_error = entry.get("rel_error")
    if rel_error is not None and (isinstance(rel_error, bool) or not isinstance(rel_error, (int, float))):
        raise FormatError(f"{name!r}: rel_error must be a number or null, got {short_repr(rel_error)}")
    try:
        rel_error = None if rel_error is None else float(rel_error)
    except OverflowError:
        raise FormatError(f"{name!r}: rel_error {short_repr(rel_error)} is out of range") from None
    if rel_error is not None and not (math.isfinite(rel_error) and rel_error >= 0):
        raise FormatError(f"{name!r}: rel_error must be a finite non-negative number, got "
                          f"{rel_error}")
    history = entry.get("history", False)
    if not isinstance(history, bool):
        raise FormatError(f"{name!r}: history must be true or false, got {short_repr(history)}")
    outliers = entry.get("outliers")
    if outliers is not None:
        if not isinstance(outliers, dict) or not {"count", "exponent"} <= set(outliers) \
                or not set(outliers) <= {"count", "exponent", "error", "values"}:
            raise FormatError(f"{name!r}: outliers must be null or {{\"count\": k, "
                              f"\"exponent\": e, \"error\": x | null}}, got {short_repr(outliers)}")
        if outliers.get("values", "F32") != "F32":
            raise FormatError(f"{name!r}: outlier values must be \"F32\" when given, got "
                              f"{short_repr(outliers['values'])}")
        error = outliers.get("error")
        if error is not None and (isinstance(error, bool) or not isinstance(error, (int, float))
                                  or not math.isfinite(error) or error < 0):
            raise FormatError(f"{name!r}: outlier error must be a non-negative number or "
                              f"null, got {short_repr(error)}")
        count, exponent = outliers["count"], outliers["exponent"]
        if not _is_int(count) or not 0 <= count <= math.prod(shape):
            raise FormatError(f"{name!r}: outlier count {short_repr(count)} is not in [0, {math.prod(shape)}]")
        if not _is_int(exponent) or not -200 <= exponent <= 200:
            raise FormatError(f"{name!r}: outlier exponent {short_repr(exponent)} is not an integer in "
                              "[-200, 200]")
    scales = entry.get("scales")
    if scales is not None and (not isinstance(scales, list) or len(scales) != len(shape)
                               or not all(v in (None, "F16", "F32") for v in scales)
                               or all(v is None for v in scales)):
        raise FormatError(f"{name!r}: scales must be null or a list of null, \"F16\" or "
                          f"\"F32\" per mode (not all null), got {short_repr(scales)}")
    error_norm = entry.get("error_norm", "frobenius")
    if error_norm not in ERROR_NORMS:
        raise FormatError(f"{name!r}: error_norm must be one of {', '.join(ERROR_NORMS)}, got "
                          f"{short_repr(error_norm)}")
    return {"shape": tuple(shape), "width": width, "orig_dtype": orig_dtype, "norm": norm,
            "rel_error": rel_error, "history": history,
            "tensorize": entry.get("tensorize"), "outliers": outliers, "scales": scales,
            "error_norm": error_norm}


def _expected_tensors(entries):
    """tensor name -> (dtype code, length) for every tensor the metadata implies."""
    return {tname: (code, length) for name, e in entries.items()
            for tname, _, _, code, length in _stored(name, e)}


def _check_tensors(header, expected, data_size):
    """The header's tensors, checked against what the metadata implies: the same names, each
    1-D of the expected dtype and length, together covering the data exactly."""
    names = [k for k in header if k != "__metadata__"]
    missing = [k for k in expected if k not in header]
    if missing:
        raise FormatError(f"missing tensors: {', '.join(map(short_repr, missing[:5]))}")
    extra = [k for k in names if k not in expected]
    if extra:
        raise FormatError(f"unexpected tensors: {', '.join(map(short_repr, extra[:5]))}")
    for tname, (code, length) in expected.items():
        info = header[tname]
        if not isinstance(info, dict):
            raise FormatError(f"tensor {tname!r}: entry is not a JSON object")
        if info.get("dtype") != code:
            raise FormatError(f"tensor {tname!r}: wrong dtype {short_repr(info.get('dtype'))}, "
                              f"expected {code!r}")
        if info.get("shape") != [length] or not _is_int(info["shape"][0]):
            raise FormatError(f"tensor {tname!r}: wrong shape {short_repr(info.get('shape'))}, "
                              f"expected [{length}] for the declared width and shape")
    infos = st.check_entries(header, data_size, FormatError, dtypes=_DTYPES)
    st.check_tiling(infos, data_size, FormatError)
    return infos


def _read_array(f, start, info, code):
    begin, end = info["data_offsets"]
    f.seek(start + begin)
    raw = f.read(end - begin)
    if len(raw) != end - begin:
        raise FormatError("file truncated while reading the tensors")
    return np.frombuffer(raw, dtype=_DTYPES[code][0])


def _decomposition(name, e, stored):
    """The SignCut of metadata entry ``e`` from its tensors, ``stored[(row name, mode)]``."""
    width, shape = e["width"], e["shape"]
    signs = []
    for a, d in enumerate(shape):
        stream, tname = stored["signs.{a}", a], f"{name}/signs.{a}"
        tail = width * d % 8
        if tail and stream[-1] >> tail:
            raise FormatError(f"tensor {tname!r}: bits set beyond the {width * d} bits of "
                              f"{width} cuts of length {d}")
        signs.append(_stream_to_rows(stream, width, d))
    if e["history"]:
        errors = stored["errors", None].astype(np.float64)
    else:                       # only the final error was kept
        errors = np.full(width, np.nan)
        if width and e["rel_error"] is not None:
            errors[-1] = e["rel_error"]
    outliers = None
    if e["outliers"] is not None:
        size = math.prod(shape)
        values = stored["outliers.values", None]
        try:                    # the constructor checks range, order and finiteness
            outliers = Outliers(stored["outliers.index", None].astype(index_dtype(size)),
                                values.astype(values.dtype.newbyteorder("=")),
                                e["outliers"]["exponent"], size, e["outliers"].get("error"),
                                copy=False)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{name!r}: bad sparse part: {exc}") from None
    scales = [stored.get(("scales.{a}", a)) for a in range(len(shape))]
    try:
        return SignCut(shape, signs, stored["coef", None].astype(np.float32), errors,
                       norm=e["norm"], orig_dtype=e["orig_dtype"], tensorize=e["tensorize"],
                       outliers=outliers, copy=False, error_norm=e["error_norm"],
                       scales=[None if v is None else v.astype(v.dtype.newbyteorder("="))
                               for v in scales])
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{name!r}: inconsistent decomposition: {exc}") from None


def load(path):
    """Load what :func:`save` wrote.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.

    Returns
    -------
    SignCut, or dict of str to SignCut
        A SignCut if the file was saved from one, else a dict in the saved order. Signs,
        coefficients, scales, shape, ``orig_dtype``, ``norm`` (and ``error_norm``), the
        tensorization and the final error come back exactly; the errors of earlier cuts are
        NaN unless the file was saved with ``history=True``.

    Raises
    ------
    FormatError
        The file is corrupt, truncated or inconsistent (the message says what is wrong).
        The whole header is checked against the size of the file before any array is read.
    OSError
        The file cannot be opened (``FileNotFoundError`` when it does not exist,
        ``IsADirectoryError`` for a folder, ``OSError`` for a FIFO, device or socket: only
        regular files are read, and never with a blocking open).
    """
    with open_regular(path) as f:
        header, start, data_size = st.read_header(f, FormatError)
        container, entries = _parse_metadata(header)
        expected = _expected_tensors(entries)
        infos = _check_tensors(header, expected, data_size)
        out = {}
        for name, e in entries.items():
            stored = {(row.name, a): _read_array(f, start, infos[tname], code)
                      for tname, row, a, code, _ in _stored(name, e)}
            out[name] = _decomposition(name, e, stored)
    return out[SINGLE_NAME] if container == "single" else out


def read_metadata(path):
    """The extra ``__metadata__`` entries saved with ``save(..., metadata=...)``, as a dict.

    The header is checked as :func:`load` checks it (``FormatError`` for a file that is not a
    valid signcut file); the arrays are not read.
    """
    with open_regular(path) as f:
        header = st.read_header(f, FormatError)[0]
    _parse_metadata(header)
    return {k: v for k, v in header["__metadata__"].items() if k not in _RESERVED_KEYS}
