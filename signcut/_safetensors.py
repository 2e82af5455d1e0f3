"""The safetensors container, read and written in one place for signcut's own files
(:mod:`signcut._format`) and for checkpoints (:mod:`signcut.weights`).

A file is an 8-byte little-endian header length ``n``, ``n`` bytes of a UTF-8 JSON object
(tensor name -> ``{"dtype", "shape", "data_offsets"}``, plus an optional ``"__metadata__"`` of
strings), then the data; offsets count from the first data byte. Every check here raises the
caller's exception class, with the caller's prefix (a path) in front of the message.
"""
import json
import math
import os

from signcut._atomic import atomic_write

__all__ = ["MAX_HEADER_BYTES", "ITEMSIZE", "read_header", "check_entries", "check_tiling",
           "encode_header", "write"]

MAX_HEADER_BYTES = 100_000_000   # the limit safetensors itself applies
# dtype codes -> bytes per entry
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E4M3FN": 1,
            "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1, "F8_E8M0": 1, "U16": 2, "I16": 2, "F16": 2,
            "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}


def is_int(x):
    """A JSON integer (not a bool)."""
    return isinstance(x, int) and not isinstance(x, bool)


def short_repr(value, limit=80):
    """repr(value), cut to ``limit`` characters: hostile headers can hold huge values."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_json(text, what, error, prefix=""):
    """A JSON document (``what`` names it in messages) with duplicate keys refused."""
    def unique(pairs):
        out = {}
        for key, value in pairs:
            if key in out:
                raise error(f"{prefix}duplicate key {short_repr(key)} in the {what}")
            out[key] = value
        return out
    try:
        return json.loads(text, object_pairs_hook=unique)
    except error:
        raise
    except (ValueError, RecursionError) as exc:
        raise error(f"{prefix}the {what} is not valid JSON: {exc}") from None


def read_header(f, error, prefix=""):
    """``(header, data_start, data_size)`` of the open file ``f``: the header is the JSON
    object (``"__metadata__"`` included), checked to be one and to fit the file."""
    size = os.fstat(f.fileno()).st_size
    if size < 8:
        raise error(f"{prefix}not a safetensors file: {size} bytes is too short for a header")
    f.seek(0)
    n = int.from_bytes(f.read(8), "little")
    if n < 2 or n > MAX_HEADER_BYTES or n > size - 8:
        raise error(f"{prefix}not a safetensors file: bad header length {n} for a file of "
                    f"{size} bytes (truncated?)")
    raw = f.read(n)
    if len(raw) != n:
        raise error(f"{prefix}file truncated inside the header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{prefix}the header is not UTF-8: {exc}") from None
    header = parse_json(text, "header", error, prefix)
    if not isinstance(header, dict):
        raise error(f"{prefix}the header is not a JSON object")
    return header, 8 + n, size - 8 - n


def check_entries(header, data_size, error, prefix="", dtypes=ITEMSIZE):
    """The tensors of a header (``"__metadata__"`` left out) in the order of their data, as
    name -> ``{"dtype", "shape", "data_offsets"}``, each checked: a dtype among ``dtypes``, a
    shape of non-negative integers, offsets that hold exactly that many bytes inside the
    ``data_size`` data bytes."""
    tensors, spans = {}, []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        what = f"{prefix}tensor {short_repr(name)}"
        if not isinstance(t, dict):
            raise error(f"{what}: the entry is not a JSON object")
        dtype, shape, offsets = t.get("dtype"), t.get("shape"), t.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in dtypes:
            raise error(f"{what}: unsupported dtype {short_repr(dtype)} (supported: "
                        f"{', '.join(dtypes)})")
        if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
            raise error(f"{what}: bad shape {short_repr(shape)}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(is_int(x) for x in offsets)):
            raise error(f"{what}: bad data_offsets {short_repr(offsets)}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise error(f"{what}: data_offsets {offsets} outside the {data_size} data bytes "
                        f"of the file (truncated?)")
        if end - begin != math.prod(shape) * ITEMSIZE[dtype]:
            raise error(f"{what}: data_offsets {offsets} do not match {dtype} {shape}")
        tensors[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}
        spans.append((begin, end, name))
    return {name: tensors[name] for _, _, name in sorted(spans)}


def check_tiling(tensors, data_size, error, prefix=""):
    """The checked ``tensors`` (in data order) cover the data exactly: no gap, no overlap."""
    position = 0
    for name, t in tensors.items():
        begin, end = t["data_offsets"]
        if begin != position:
            raise error(f"{prefix}tensor {short_repr(name)} starts at byte {begin}, expected "
                        f"{position} (overlapping tensors or a gap)")
        position = end
    if position != data_size:
        raise error(f"{prefix}the tensors cover {position} bytes but the file holds "
                    f"{data_size} data bytes (truncated or trailing garbage)")


def encode_header(entries, metadata=None):
    """The header bytes (length included, padded so that the data start 8-byte aligned) for
    ``entries``, ``(name, dtype code, shape)`` laid out one after the other in that order.
    Raises ValueError for a repeated or reserved name."""
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, code, shape in entries:
        if name == "__metadata__" or name in header:
            raise ValueError(f"tensor name {name!r} is reserved or repeated")
        nbytes = math.prod(shape) * ITEMSIZE[code]
        header[name] = {"dtype": code, "shape": [int(d) for d in shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return len(text).to_bytes(8, "little") + text


def write(path, head, chunks):
    """Write ``head`` then the buffers ``chunks`` yields to ``path`` atomically (fsynced; on
    any error ``path`` is left as it was)."""
    def write_to(tmp):
        with open(tmp, "wb") as f:
            f.write(head)
            for chunk in chunks():
                f.write(memoryview(chunk).cast("B"))
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write_to)
