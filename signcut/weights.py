"""Model weights: compress a safetensors checkpoint tensor by tensor, and expand it back.

    >>> from signcut import weights
    >>> report = weights.compress("model.safetensors", "model.sct", bits_per_entry=8)
    >>> weights.expand("model.sct", "restored.safetensors", dtype="bf16")

``compress`` takes one ``.safetensors`` file or a folder of shards with a
``*.safetensors.index.json``. Every floating tensor (F16, BF16, F32, F64) of two or more
dimensions that passes the filters is decomposed with :func:`signcut.decompose`; every other
tensor (1-D, integer, bool, F8, filtered out, or too small for one cut at the budget) is
copied through byte for byte.

Outputs, for ``out = OUT``:

``OUT``
    One signcut file (:func:`signcut.save`, a mapping ``key -> SignCut``), loadable with
    :func:`signcut.load`. Its ``__metadata__`` entry ``signcut_weights`` is a JSON object
    ``{"version": 1, "bits_per_entry", "seed", "outliers", "passthrough": file name or null,
    "tensors": [{"name", "dtype", "shape", "kind": "signcut" | "passthrough", "key",
    "reason", "seed", "width", "sparse", "bits_per_entry", "rel_error", "seconds"}, ...]}``
    listing
    every tensor of the checkpoint in order. ``key`` is the name inside the signcut file or
    the side file (the tensor name itself unless it holds ``'/'`` or is too long).
``OUT.passthrough.safetensors``
    A plain safetensors file with the tensors copied through, in their original dtype
    (only written when there are any).
``OUT.report.csv``
    The per-tensor report: name, kind, dtype, shape, width, bits per entry, relative error,
    seconds, outlier (error above ``OUTLIER_FACTOR`` times the median) and a note.
``OUT.parts/``
    Work folder while compressing: one signcut file per finished tensor. A rerun after an
    interruption loads and checks the parts found there and skips them. Removed at the end.

Every file is written atomically (a temporary file, then ``os.replace``); ``OUT`` appears
only once everything is done. Assembling ``OUT`` holds the compressed tensors in memory
(about ``bits_per_entry / 8`` bytes per compressed entry).

Parallel runs (``jobs > 1``, ``executor=`` any :class:`concurrent.futures.Executor`, or a
``dask.distributed.Client`` / ``scheduler="tcp://..."``) give the same bits as a
single-process run: each tensor's seed is derived from ``seed`` and its name, and the engine
is deterministic for any number of threads. Workers read their tensor from ``src`` and write
their part into ``OUT.parts/`` themselves, so remote dask workers need both paths on a shared
file system.
"""
import concurrent.futures as cf
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import statistics
import sys
import time

import numpy as np

log = logging.getLogger("signcut.weights")

from signcut._atomic import PathError, atomic_write, check_output, open_regular
from signcut._budget import width_for_bits
from signcut._format import short_repr
from signcut.calibration import calibration_stats, read_calibration  # noqa: F401
from signcut.calibration import fingerprint as calibration_fingerprint

__all__ = ["compress", "expand", "info", "WeightsError", "OUTLIER_FACTOR", "calibration_stats"]

FORMAT_KEY = "signcut_weights"
FORMAT_VERSION = 1
OUTLIER_FACTOR = 2.0
MAX_HEADER_BYTES = 100_000_000
PASSTHROUGH_SUFFIX = ".passthrough.safetensors"
REPORT_SUFFIX = ".report.csv"
PARTS_SUFFIX = ".parts"
PARTS_MARKER = ".signcut-parts"         # in a work folder: made by signcut weights
SIDE_KEY = "signcut_weights_passthrough"   # in a side file's metadata: the output it belongs to

# safetensors dtype codes -> bytes per entry
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E4M3FN": 1,
             "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1, "F8_E8M0": 1, "U16": 2, "I16": 2, "F16": 2,
             "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}
_NUMPY = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_FLOAT = ("F16", "BF16", "F32", "F64")
_EXPAND_DTYPES = {"bf16": "BF16", "f16": "F16", "f32": "F32", "bfloat16": "BF16",
                  "float16": "F16", "float32": "F32"}


class WeightsError(ValueError):
    """Bad input for compress or expand (one-line message)."""


# ------------------------------------------------------------------ reading safetensors
def read_header(path):
    """Parse and check a safetensors header: ``(tensors, metadata, data_start)`` where
    ``tensors`` maps name -> ``{"dtype", "shape", "data_offsets"}`` in file order."""
    path = os.fspath(path)
    try:
        f = open_regular(path)
    except FileNotFoundError:
        raise WeightsError(f"cannot read {path!r}: no such file") from None
    except OSError as exc:
        raise WeightsError(f"cannot read {path!r}: {exc.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise WeightsError(f"{path!r} is not a safetensors file ({size} bytes)")
        n = int.from_bytes(f.read(8), "little")
        if n < 2 or n > MAX_HEADER_BYTES or n > size - 8:
            raise WeightsError(f"{path!r} is not a safetensors file (header length {n} for "
                               f"{size} bytes; truncated?)")
        raw = f.read(n)
    def unique(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise WeightsError(f"{path!r}: duplicate tensor name {dup!r} in the header")
        return dict(pairs)

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=unique)
    except WeightsError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WeightsError(f"{path!r} is not a safetensors file (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path!r} is not a safetensors file (the header is not an object)")
    metadata = header.pop("__metadata__", None) or {}
    data_size = size - 8 - n
    tensors, spans = {}, []
    for name, t in header.items():
        if not isinstance(t, dict):
            raise WeightsError(f"{path!r}: tensor {name!r} has a bad header entry")
        dtype, shape, offsets = t.get("dtype"), t.get("shape"), t.get("data_offsets")
        if not isinstance(dtype, str):
            raise WeightsError(f"{path!r}: tensor {name!r} has no dtype")
        if dtype not in _ITEMSIZE:
            raise WeightsError(f"{path!r}: tensor {name!r} has unsupported dtype {dtype} "
                               f"(supported: {', '.join(_ITEMSIZE)})")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(x, int) for x in offsets)):
            raise WeightsError(f"{path!r}: tensor {name!r} has a bad shape or data_offsets")
        begin, end = offsets
        nbytes = math.prod(shape) * _ITEMSIZE[dtype]
        if not 0 <= begin <= end or end - begin != nbytes:
            raise WeightsError(f"{path!r}: tensor {name!r}: data_offsets {offsets} do not "
                               f"match {dtype} {shape}")
        if end > data_size:
            raise WeightsError(f"{path!r}: tensor {name!r} ends at byte {end} of {data_size} "
                               f"data bytes (truncated file)")
        tensors[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}
        spans.append((begin, name))
    order = [name for _, name in sorted(spans)]
    return {name: tensors[name] for name in order}, metadata, 8 + n


def _read_raw(path, start, info):
    begin, end = info["data_offsets"]
    with open_regular(path) as f:
        f.seek(start + begin)
        raw = f.read(end - begin)
    if len(raw) != end - begin:
        raise WeightsError(f"{path!r}: truncated while reading a tensor")
    return raw


def bf16_to_f32(raw_u16):
    """bfloat16 bits (uint16) -> float32: the 16 bits become the high half of a float32."""
    return (np.asarray(raw_u16, dtype="<u2").astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16(x):
    """float32 -> bfloat16 bits (uint16), rounding to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), rounded).astype("<u2")


def _to_array(raw, info):
    """The bytes of one floating tensor as a numpy array (BF16 converted to float32)."""
    if info["dtype"] == "BF16":
        return bf16_to_f32(np.frombuffer(raw, dtype="<u2")).reshape(info["shape"])
    return np.frombuffer(raw, dtype=_NUMPY[info["dtype"]]).reshape(info["shape"])



def _scan(src):
    """The checkpoint: ``(tensors, inputs)``, the list of ``(name, file, data_start, info)``
    in order and every path it was read from (the folder, its index and shards)."""
    src = os.fspath(src)
    if not os.path.exists(src):
        raise WeightsError(f"cannot read {src!r}: no such file or folder")
    if os.path.isdir(src):
        indexes = sorted(p for p in os.listdir(src) if p.endswith(".safetensors.index.json"))
        if len(indexes) != 1:
            raise WeightsError(f"folder {src!r} must hold exactly one *.safetensors.index.json, "
                               f"found {len(indexes)}")
        index_path = os.path.join(src, indexes[0])
        try:
            with open_regular(index_path) as f:
                if os.fstat(f.fileno()).st_size > MAX_HEADER_BYTES:
                    raise ValueError
                weight_map = json.loads(f.read().decode("utf-8"))["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError
        except OSError as exc:
            raise WeightsError(f"cannot read {index_path!r}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError, RecursionError):
            raise WeightsError(f"{index_path!r} is not a valid index (no weight_map)") from None
        shards = list(dict.fromkeys(weight_map.values()))
        files = []
        for shard in shards:
            if not isinstance(shard, str) or os.path.basename(shard) != shard:
                raise WeightsError(f"{index_path!r}: bad shard name {shard!r}")
            files.append(os.path.join(src, shard))
        inputs = [src, index_path] + files
    else:
        weight_map, files = None, [src]
        inputs = [src]
    out, seen = [], {}
    for path in files:
        if not os.path.exists(path):
            raise WeightsError(f"shard {path!r} named in the index does not exist")
        tensors, _, start = read_header(path)
        for name, info in tensors.items():
            if name in seen:
                raise WeightsError(f"duplicate tensor name {name!r} in {seen[name]!r} and "
                                   f"{path!r}")
            seen[name] = path
            if weight_map is not None and weight_map.get(name) != os.path.basename(path):
                raise WeightsError(f"tensor {name!r} is in {path!r} but the index maps it to "
                                   f"{weight_map.get(name)!r}")
            out.append((name, path, start, info))
    if weight_map is not None:
        missing = [n for n in weight_map if n not in seen]
        if missing:
            raise WeightsError(f"tensors named in the index are missing from the shards: "
                               f"{', '.join(map(repr, missing[:5]))}")
    return out, inputs


# ------------------------------------------------------------------ writing safetensors
def write_safetensors(path, entries, metadata=None):
    """Write a safetensors file atomically, one tensor at a time. ``entries``: list of
    ``(name, dtype code, shape, produce)`` where ``produce()`` returns the tensor's bytes."""
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, code, shape, _ in entries:
        if name == "__metadata__" or name in header:
            raise WeightsError(f"cannot write {path!r}: tensor name {name!r} is reserved or "
                               f"repeated")
        nbytes = math.prod(shape) * _ITEMSIZE[code]
        header[name] = {"dtype": code, "shape": [int(d) for d in shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(len(text).to_bytes(8, "little") + text)
            for name, code, shape, produce in entries:
                data = memoryview(produce()).cast("B")
                if len(data) != header[name]["data_offsets"][1] - header[name]["data_offsets"][0]:
                    raise RuntimeError(f"tensor {name!r}: wrong number of bytes")
                f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


# ------------------------------------------------------------------ one tensor
def tensor_seed(seed, name):
    """The seed of tensor ``name``: 63 bits of SHA-256 over the run seed and the name."""
    digest = hashlib.sha256(f"{int(seed)}\0{name}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _part_path(parts, name):
    return os.path.join(parts, hashlib.sha256(name.encode("utf-8")).hexdigest()[:24] + ".sct")


def _part_record(path, expected):
    """The record of a finished part, or None when it is missing, corrupt or stale (made
    from other bytes, another budget or another seed)."""
    import signcut
    if not os.path.isfile(path):
        return None
    try:
        record = json.loads(signcut.read_metadata(path)["weights_part"])
        if any(record.get(k) != v for k, v in expected.items()):
            return None
        signcut.load(path)                 # validates the whole file
    except Exception:
        return None
    return record



def _compress_part(task):
    """Worker: read one tensor, decompose it, save the part. Returns its record.

    The part records the SHA-256 of the tensor's bytes: a rerun reuses it only for the same
    bytes (a checkpoint changed under the same names is decomposed again)."""
    import signcut
    name = task["name"]
    raw = _read_raw(task["file"], task["start"], task["info"])
    expected = dict(task["expected"], sha256=hashlib.sha256(raw).hexdigest())
    existing = _part_record(task["part"], expected)
    if existing is not None:
        return dict(existing, resumed=True)
    t0 = time.perf_counter()
    x = _to_array(raw, task["info"])
    del raw
    kw = dict(bits_per_entry=task["bits_per_entry"], seed=task["seed"],
              n_threads=task["n_threads"])
    fit = task.get("fit") or {}           # scales= and col_weights=, when asked for
    try:
        try:
            result = signcut.decompose(x, outliers=task["outliers"] or None, **fit, **kw)
        except ValueError:      # the sparse part or scales left too little for one cut: none
            if not task["outliers"] and not fit:
                raise
            result = signcut.decompose(x, **kw)
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"tensor {name!r}: {exc}") from None
    except MemoryError as exc:
        raise MemoryError(f"tensor {name!r}: {exc}") from None
    seconds = time.perf_counter() - t0
    sparse = 0 if result.outliers is None else len(result.outliers)
    record = dict(expected, width=result.width, sparse=sparse, nbytes=result.nbytes,
                  bits_per_entry=result.bits_per_entry, rel_error=result.rel_error,
                  seconds=seconds)
    signcut.save(task["part"], {"tensor": result},
                 metadata={"weights_part": json.dumps(record)})
    return dict(record, resumed=False)



# ------------------------------------------------------------------ compress
def _key(name, used):
    key = name
    if ("/" in key or not 1 <= len(key) <= 256 or not key.isprintable() or key in used
            or key == "__metadata__"):
        key = f"tensor{len(used)}"
        while key in used:
            key += "_"
    used.add(key)
    return key



def _make_executor(jobs, executor, scheduler):
    """(executor, close) for the options given; executor None means run here."""
    if executor is not None and scheduler is not None:
        raise ValueError("give executor or scheduler, not both")
    if scheduler is not None:
        try:
            from dask.distributed import Client
        except ImportError:
            raise WeightsError("scheduler= needs dask.distributed: pip install "
                               "'signcut[distributed]'") from None
        client = Client(scheduler)
        return client.get_executor(), client.close
    if executor is not None:
        if not isinstance(executor, cf.Executor) and hasattr(executor, "get_executor"):
            executor = executor.get_executor()          # a dask.distributed.Client
        if not isinstance(executor, cf.Executor) and not hasattr(executor, "submit"):
            raise TypeError(f"executor must be a concurrent.futures.Executor or a "
                            f"dask.distributed.Client, got {type(executor).__name__}")
        return executor, None
    if jobs > 1:
        import multiprocessing
        pool = cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
        return pool, lambda: pool.shutdown(cancel_futures=True)
    return None, None


def _check_output(path, inputs, folder=False):
    try:
        check_output(path, inputs, folder=folder)
    except PathError as exc:
        raise WeightsError(str(exc)) from None


def _check_parts(parts):
    """A work folder that exists must be one this command made (it holds PARTS_MARKER)."""
    if os.path.lexists(parts) and not (os.path.isdir(parts) and not os.path.islink(parts)
                                       and os.path.isfile(os.path.join(parts, PARTS_MARKER))):
        raise WeightsError(f"{parts!r} exists but was not made by signcut weights (no "
                           f"{PARTS_MARKER} in it): move it away or choose another output")


def _open_parts(parts, out):
    """Make the work folder with its marker, or reuse one an interrupted run made (checked
    by _check_parts). True when made now."""
    if os.path.isdir(parts):
        return False
    os.mkdir(parts)
    try:
        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(f"work folder of signcut weights for {os.path.basename(out)}\n")
        atomic_write(os.path.join(parts, PARTS_MARKER), write)
    except BaseException:
        os.rmdir(parts)
        raise
    return True


_PART_TMP = re.compile(r"\.[0-9a-f]{24}\.[0-9a-f]{12}\.tmp\.sct")


def _close_parts(parts, names):
    """Remove the work folder: only what this command writes there (the parts ``names``,
    their temporary files and the marker); a folder holding anything else stays."""
    for entry in os.listdir(parts):
        if entry in names or entry == PARTS_MARKER or _PART_TMP.fullmatch(entry):
            os.unlink(os.path.join(parts, entry))
    try:
        os.rmdir(parts)
    except OSError:
        log.warning("left %s in place: it holds files signcut did not write", parts)


def _is_side_file(side, out):
    """Whether ``side`` is a side file written for ``out`` (safe to remove when stale)."""
    try:
        return read_header(side)[1].get(SIDE_KEY) == os.path.basename(out)
    except WeightsError:
        return False



def _fmt_shape(shape):
    return "x".join(str(d) for d in shape)


def compress(src, out, *, bits_per_entry=8.0, include=None, exclude=None, min_size=0, jobs=1,
             executor=None, scheduler=None, seed=0, progress=True, outliers="auto", scales=None,
             calibration=None):
    """Compress a safetensors checkpoint into a signcut file (see the module docstring).

    Parameters
    ----------
    src : path
        A ``.safetensors`` file, or a folder holding shards and one ``*.safetensors.index.json``.
    out : path
        The signcut file to write; ``OUT.passthrough.safetensors``, ``OUT.report.csv`` and,
        while working, ``OUT.parts/`` go next to it.
    bits_per_entry : float
        Budget of each compressed tensor (``signcut.decompose(bits_per_entry=...)``).
    include, exclude : str (regular expression), optional
        Compress only tensors whose name matches ``include`` (``re.search``) and not
        ``exclude``; the others are copied through.
    min_size : int
        Tensors of fewer entries are copied through.
    jobs : int
        Processes (``ProcessPoolExecutor``); each decomposition then uses one thread.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Run the tensors there instead (one thread each); not shut down here.
    scheduler : str, optional
        Address of a dask scheduler (``"tcp://host:8786"``): a Client is made and closed.
    seed : int
        Run seed; tensor ``name`` is decomposed with ``tensor_seed(seed, name)``.
    progress : bool
        Print one line per finished tensor and the summary (stdout).
    outliers : "auto", float in [0, 1) or None
        Keep outliers of each tensor as a sparse part (``signcut.decompose(outliers=...)``),
        paid from the same budget. ``"auto"`` (default) keeps the entries beyond 8 robust
        standard deviations, none in a Gaussian tensor: measured by
        ``benchmarks/bench_outliers.py`` to cut the error about 3x on heavy-tailed synthetic
        weights at 8 bits per entry and to change nothing on Gaussian ones. 0 or None: off.
    scales : None, "rows", "cols", "both" or "auto"
        Scale vectors per tensor (``signcut.decompose(scales=...)``), paid from the same
        budget. Measured on a sentence embedder (``benchmarks/bench_model.py``), "both" gave
        the most faithful outputs at 2 to 8 bits per entry; "auto" keeps scales only where
        they lower a tensor's own error. Default None: no scales.
    calibration : path, optional
        A file of :func:`calibration_stats` (per weight name, the root mean square of each
        input feature): each tensor it names is fitted with those ``col_weights``
        (``signcut.decompose``), so its error, the report's included, is in that weighted
        norm; tensors it does not name are compressed as without it. A vector of another
        length than the tensor's last axis is an error. Default None: nothing changes.
    A tensor whose budget affords no cut beside its sparse part or scales is compressed
    without them.

    Returns
    -------
    dict
        ``{"path", "passthrough", "report", "tensors": [record, ...], "summary": {...}}``.
    """
    from signcut._api import _outlier_fraction
    from signcut._scales import check_scales
    src, out = os.fspath(src), os.fspath(out)
    outliers = _outlier_fraction(outliers) or 0.0
    check_scales(scales, 2)
    stats = None if calibration is None else read_calibration(calibration)
    bits_per_entry = float(bits_per_entry)
    if not bits_per_entry > 0 or not math.isfinite(bits_per_entry):
        raise ValueError(f"bits_per_entry must be positive, got {bits_per_entry}")
    jobs = int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    seed = int(seed)
    try:
        inc = re.compile(include) if include else None
        exc_re = re.compile(exclude) if exclude else None
    except re.error as e:
        raise WeightsError(f"bad regular expression: {e}") from None
    entries, inputs = _scan(src)
    if calibration is not None:
        inputs = inputs + [os.fspath(calibration)]      # never written over
    parts, side, report = out + PARTS_SUFFIX, out + PASSTHROUGH_SUFFIX, out + REPORT_SUFFIX
    for path in (out, side, report):
        _check_output(path, inputs)
    _check_output(parts, inputs, folder=True)
    _check_parts(parts)
    plan, used_keys, used_pass = [], set(), set()
    for name, path, start, info in entries:
        dtype, shape = info["dtype"], info["shape"]
        size = math.prod(shape)
        reason = None
        if dtype.startswith("C"):
            raise WeightsError(f"tensor {name!r} has complex dtype {dtype}: not supported")
        if dtype not in _FLOAT:
            reason = f"dtype {dtype}"
        elif len(shape) < 2:
            reason = f"{len(shape)}-D"
        elif size == 0:
            reason = "empty"
        elif inc is not None and not inc.search(name):
            reason = "not included"
        elif exc_re is not None and exc_re.search(name):
            reason = "excluded"
        elif size < min_size:
            reason = f"fewer than {min_size} entries"
        elif width_for_bits(bits_per_entry * size, shape) < 1:
            reason = "budget affords no cut"
        rec = {"name": name, "dtype": dtype, "shape": list(shape)}
        if reason is None:
            rec.update(kind="signcut", key=_key(name, used_keys), reason="",
                       seed=tensor_seed(seed, name))
        else:
            rec.update(kind="passthrough", key=_key(name, used_pass), reason=reason, seed=None,
                       width=None, bits_per_entry=None, rel_error=None, seconds=None)
        plan.append((rec, path, start, info))

    todo = [(rec, path, start, info) for rec, path, start, info in plan
            if rec["kind"] == "signcut"]
    fits = _fit_options([rec for rec, *_ in todo], scales, stats, calibration)
    parallel, close = _make_executor(jobs, executor, scheduler)
    try:
        made_parts = bool(todo) and _open_parts(parts, out)
    except BaseException:
        if close is not None:
            close()
        raise
    n_threads = 1 if parallel is not None else None
    tasks = []
    for rec, path, start, info in todo:
        expected = {"name": rec["name"], "shape": rec["shape"], "dtype": rec["dtype"],
                    "seed": rec["seed"], "budget": bits_per_entry, "outliers": outliers}
        tasks.append({"name": rec["name"], "file": os.path.abspath(path), "start": start,
                      "info": info, "bits_per_entry": bits_per_entry, "seed": rec["seed"],
                      "outliers": outliers,
                      "n_threads": n_threads, "part": os.path.abspath(_part_path(parts, rec["name"])),
                      "expected": expected})
        if fits.get(rec["name"]):          # tasks without scales or weights stay as they were
            tasks[-1]["fit"], expected["fit"] = fits[rec["name"]]
    by_name = {rec["name"]: rec for rec, *_ in plan}
    t_start = time.perf_counter()
    todo = {task["name"]: math.prod(by_name[task["name"]]["shape"]) for task in tasks}
    total, done = sum(todo.values()), [0, 0]

    def finished(result):
        rec = by_name[result["name"]]
        for k in ("width", "sparse", "nbytes", "bits_per_entry", "rel_error", "seconds"):
            rec[k] = result[k]
        rec["resumed"] = result["resumed"]
        done[0] += 1
        done[1] += todo[rec["name"]]
        if progress:
            note = " (resumed)" if result["resumed"] else ""
            elapsed = time.perf_counter() - t_start
            eta = elapsed * (total - done[1]) / done[1] if done[1] else 0.0
            print(f"[{done[0]}/{len(tasks)}, {done[1] / max(total, 1):.0%} of entries, "
                  f"ETA {eta:.0f} s] {printable(rec['name'])}: {_fmt_shape(rec['shape'])} width "
                  f"{rec['width']}, {rec['bits_per_entry']:.3f} bits/entry, error "
                  f"{rec['rel_error']:.4%}, {rec['seconds']:.2f} s{note}", flush=True)

    try:
        if parallel is None:
            for task in tasks:
                finished(_compress_part(task))
        else:
            futures = [parallel.submit(_compress_part, task) for task in tasks]
            for fut in cf.as_completed(futures):
                finished(fut.result())
    except BaseException:
        if made_parts and not any(r.get("width") is not None for r in by_name.values()
                                  if r["kind"] == "signcut"):
            _close_parts(parts, set())     # nothing finished: leave nothing behind
        raise
    finally:
        if close is not None:
            close()

    # ---------------------------------------------------------------- assemble
    import signcut
    compressed = {}
    for rec, *_ in plan:
        if rec["kind"] == "signcut":
            compressed[rec["key"]] = signcut.load(_part_path(parts, rec["name"]))["tensor"]
    errors = [r["rel_error"] for r, *_ in plan if r["kind"] == "signcut"]
    median = statistics.median(errors) if errors else None
    for rec, *_ in plan:
        rec["outlier"] = bool(rec["kind"] == "signcut" and median is not None
                              and rec["rel_error"] > OUTLIER_FACTOR * median and median > 0)
    records = [rec for rec, *_ in plan]
    passthrough = [(rec, path, start, info) for rec, path, start, info in plan
                   if rec["kind"] == "passthrough"]
    if passthrough:
        write_safetensors(side, [
            (rec["key"], info["dtype"], info["shape"],
             (lambda p=path, s=start, i=info: _read_raw(p, s, i)))
            for rec, path, start, info in passthrough],
            metadata={SIDE_KEY: os.path.basename(out)})
    meta = {"version": FORMAT_VERSION, "bits_per_entry": bits_per_entry, "seed": seed,
            **({"scales": scales} if scales is not None else {}),
            **({"calibration": os.path.basename(os.fspath(calibration))} if stats else {}),
            "outliers": outliers,
            "passthrough": os.path.basename(side) if passthrough else None,
            "tensors": [{k: rec.get(k) for k in ("name", "dtype", "shape", "kind", "key",
                                                  "reason", "seed", "width", "sparse",
                                                  "bits_per_entry", "rel_error", "outlier")}
                        for rec in records]}      # no timings: the same run, the same bytes
    signcut.save(out, compressed, metadata={FORMAT_KEY: json.dumps(meta)})
    if not passthrough and _is_side_file(side, out):
        os.unlink(side)                    # this output's side file from an earlier run

    summary = _summary(records, time.perf_counter() - t_start)
    _write_csv(report, records)
    if tasks:
        _close_parts(parts, {os.path.basename(task["part"]) for task in tasks})
    if progress:
        print(summary["line"], flush=True)
    return {"path": out, "passthrough": side if passthrough else None, "report": report,
            "tensors": records, "summary": summary}


def _fit_options(records, scales, stats, calibration):
    """Per tensor to compress, its ``scales=`` and ``col_weights=`` (and what its part
    record keeps of them), when asked for; checked before anything is written."""
    names = {rec["name"] for rec in records}
    if stats is not None and records and not names & set(stats):
        raise WeightsError(f"calibration file {os.fspath(calibration)!r} names none of the "
                           f"{len(names)} tensors to compress")
    unknown = sorted(set(stats or ()) - names)
    if unknown:
        log.warning("calibration names %d tensor(s) not compressed here, e.g. %s",
                    len(unknown), printable(unknown[0]))
    fits = {}
    for rec in records:
        fit = {} if scales is None else {"scales": scales}
        weights = None if stats is None else stats.get(rec["name"])
        if weights is not None:
            if rec["shape"][-1] != len(weights):
                raise WeightsError(f"calibration for {rec['name']!r} has {len(weights)} "
                                   f"entries but the tensor's last axis has "
                                   f"{rec['shape'][-1]} (shape {_fmt_shape(rec['shape'])})")
            fit["col_weights"] = weights
        if fit:
            fits[rec["name"]] = (fit, {"scales": scales, "col_weights": None if weights is None
                                       else calibration_fingerprint(weights)})
    return fits


def _summary(records, seconds):
    comp = [r for r in records if r["kind"] == "signcut"]
    orig = sum(math.prod(r["shape"]) * _ITEMSIZE[r["dtype"]] for r in comp)
    stored = sum(r.get("nbytes") or math.ceil(r["width"] * sum(r["shape"]) / 8) + 4 * r["width"]
                 for r in comp)
    entries = sum(math.prod(r["shape"]) for r in comp)
    errors = [r["rel_error"] for r in comp]
    outliers = [r["name"] for r in comp if r.get("outlier")]
    s = {"compressed": len(comp), "passthrough": len(records) - len(comp),
         "entries": entries, "original_bytes": orig, "stored_bytes": stored,
         "bits_per_entry": 8 * stored / entries if entries else 0.0,
         "median_error": statistics.median(errors) if errors else None,
         "max_error": max(errors) if errors else None, "outliers": outliers,
         "seconds": seconds}
    line = (f"{s['compressed']} tensors compressed, {s['passthrough']} copied through; "
            f"{s['bits_per_entry']:.3f} bits/entry ({stored} of {orig} bytes)")
    if errors:
        line += f"; error median {s['median_error']:.4%}, max {s['max_error']:.4%}"
    line += f"; {len(outliers)} outlier(s) (> {OUTLIER_FACTOR:g}x median)"
    if outliers:
        line += ": " + ", ".join(map(printable, outliers[:5])) + (" ..." if len(outliers) > 5
                                                                   else "")
    s["line"] = line + f"; {seconds:.1f} s"
    return s


def _write_csv(path, records):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "kind", "dtype", "shape", "width", "bits_per_entry", "rel_error",
                "seconds", "outlier", "note"])
    for r in records:
        comp = r["kind"] == "signcut"
        w.writerow([r["name"], r["kind"], r["dtype"], _fmt_shape(r["shape"]),
                    r["width"] if comp else "",
                    f"{r['bits_per_entry']:.6f}" if comp else "",
                    repr(r["rel_error"]) if comp else "",
                    f"{r['seconds']:.4f}" if comp else "",
                    "yes" if r.get("outlier") else "", r.get("reason") or ""])

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


# ------------------------------------------------------------------ reading our output
def read_kind(path):
    """Tell a file written by :func:`compress` from another signcut file.

    Returns ``("weights", meta)`` with the ``signcut_weights`` metadata dict for the first,
    ``("signcut", None)`` for the second. Raises ``WeightsError`` (one line) when the file is
    missing, is not a signcut file, or holds bad weights metadata (checked field by field:
    a tampered file cannot make :func:`expand` read other files or write a broken output).
    """
    import signcut
    path = os.fspath(path)
    try:
        extra = signcut.read_metadata(path)
    except signcut.FormatError as exc:
        raise WeightsError(f"{path!r} is not a signcut file: {exc}") from None
    except FileNotFoundError:
        raise WeightsError(f"cannot read {path!r}: no such file") from None
    except OSError as exc:
        raise WeightsError(f"cannot read {path!r}: {exc.strerror}") from None
    if FORMAT_KEY not in extra:
        return "signcut", None
    try:
        meta = json.loads(extra[FORMAT_KEY])
    except (ValueError, RecursionError):
        raise WeightsError(f"{path!r}: the {FORMAT_KEY} metadata is not valid JSON") from None
    _check_meta(meta, path)
    return "weights", meta


def _check_meta(meta, path):
    """Raise WeightsError unless ``meta`` is well-formed weights metadata."""
    def bad(what):
        raise WeightsError(f"{path!r}: bad {FORMAT_KEY} metadata: {what}")

    def is_int(x):
        return isinstance(x, int) and not isinstance(x, bool)

    def is_number(x):
        return (isinstance(x, (int, float)) and not isinstance(x, bool)
                and math.isfinite(x))

    if not isinstance(meta, dict):
        bad("not a JSON object")
    if meta.get("version") != FORMAT_VERSION:
        raise WeightsError(f"{path!r}: unknown weights format version "
                           f"{short_repr(meta.get('version'))}")
    if not is_number(meta.get("bits_per_entry")) or not is_int(meta.get("seed")):
        bad("bits_per_entry and seed must be numbers")
    side = meta.get("passthrough")
    if side is not None and (not isinstance(side, str) or not _plain_file_name(side)):
        bad(f"passthrough must be a file name beside the file, got {short_repr(side)}")
    tensors = meta.get("tensors")
    if not isinstance(tensors, list):
        bad("no list of tensors")
    names, keys = set(), {"signcut": set(), "passthrough": set()}
    for t in tensors:
        if not isinstance(t, dict):
            bad(f"a tensor entry is not a JSON object: {short_repr(t)}")
        name, kind, key = t.get("name"), t.get("kind"), t.get("key")
        if not isinstance(name, str) or not name or name == "__metadata__" or name in names:
            bad(f"tensor names must be distinct non-empty strings, got {short_repr(name)}")
        names.add(name)
        if kind not in keys or not isinstance(key, str) or key in keys[kind]:
            bad(f"tensor {name!r}: kind and key must be 'signcut' or 'passthrough' and a "
                f"distinct name")
        keys[kind].add(key)
        if t.get("dtype") not in (_FLOAT if kind == "signcut" else _ITEMSIZE):
            bad(f"tensor {name!r}: dtype {short_repr(t.get('dtype'))}")
        shape = t.get("shape")
        if (not isinstance(shape, list) or len(shape) > 64
                or not all(is_int(d) and d >= 0 for d in shape)):
            bad(f"tensor {name!r}: shape {short_repr(shape)}")
    if keys["passthrough"] and side is None:
        bad("tensors copied through but no passthrough file")


def _plain_file_name(name):
    """A name of a file in the same folder: no folder part, no '..', no NUL."""
    return (name not in ("", ".", "..") and "\0" not in name and "/" not in name
            and os.sep not in name and (os.altsep is None or os.altsep not in name))


def printable(name):
    """A tensor name fit for a terminal: control and other non-printable characters
    escaped (a checkpoint's names are data, not terminal commands)."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")



def info(path):
    """What a file written by :func:`compress` holds: the ``signcut_weights`` metadata dict
    (``tensors`` lists every tensor). Raises ``WeightsError`` for other files."""
    kind, meta = read_kind(path)
    if kind != "weights":
        raise WeightsError(f"{os.fspath(path)!r} is a signcut file but not compressed model "
                           f"weights")
    return meta


def expand(src, out, dtype="bf16"):
    """Write a plain safetensors checkpoint from a file written by :func:`compress`.

    Compressed tensors are expanded (float32) and written as ``dtype``: ``"bf16"`` (round to
    nearest even, dtype ``BF16`` in the header), ``"f16"``, ``"f32"``, or ``None`` for each
    tensor's original dtype. Copied-through tensors keep their original bytes and dtype.
    Names, shapes and order are the original ones. Written atomically, one tensor at a time.

    The file's metadata is checked against what it holds before anything is written: every
    decomposition must have the shape its entry names, copied tensors are read only from the
    side file next to ``src``, and ``out`` may be neither ``src`` nor its side file.
    """
    import signcut
    src, out = os.fspath(src), os.fspath(out)
    if dtype is not None:
        code = _EXPAND_DTYPES.get(str(dtype).lower())
        if code is None:
            raise ValueError(f"dtype must be bf16, f16, f32 or None, got {dtype!r}")
    else:
        code = None
    meta = info(src)
    side = None
    if meta.get("passthrough"):
        side = os.path.join(os.path.dirname(os.path.abspath(src)), meta["passthrough"])
    _check_output(out, [src, side])
    compressed = signcut.load(src)
    side_tensors, side_start = {}, 0
    if side is not None:
        if not os.path.isfile(side):
            raise WeightsError(f"{src!r} needs its side file {side!r}, which is missing")
        side_tensors, _, side_start = read_header(side)
    entries = []
    for t in meta["tensors"]:
        name, shape = t["name"], t["shape"]
        if t["kind"] == "signcut":
            sc = compressed.get(t["key"]) if isinstance(compressed, dict) else None
            if sc is None:
                raise WeightsError(f"{src!r}: tensor {name!r} is missing")
            if tuple(sc.shape) != tuple(shape):
                raise WeightsError(f"{src!r}: tensor {name!r} is listed as {_fmt_shape(shape)} "
                                   f"but its decomposition has shape {_fmt_shape(sc.shape)}")
            target = code or t["dtype"]

            def produce(sc=sc, target=target):
                x = sc.expand()
                if target == "BF16":
                    return f32_to_bf16(x)
                return np.ascontiguousarray(x, dtype=_NUMPY[target])
            entries.append((name, target, shape, produce))
        else:
            info_ = side_tensors.get(t["key"])
            if info_ is None:
                raise WeightsError(f"{side!r}: copied tensor {name!r} is missing")
            if info_["dtype"] != t["dtype"] or info_["shape"] != shape:
                raise WeightsError(f"{side!r}: copied tensor {name!r} is {info_['dtype']} "
                                   f"{_fmt_shape(info_['shape'])}, listed as {t['dtype']} "
                                   f"{_fmt_shape(shape)}")
            entries.append((name, info_["dtype"], info_["shape"],
                            lambda i=info_: _read_raw(side, side_start, i)))
    write_safetensors(out, entries, metadata={"format": "pt"})
    return out



def read_tensor(path, name):
    """A tensor of a safetensors file as numpy (BF16 converted to float32; other non-numpy
    dtypes as raw uint8 bytes). Handy to compare checkpoints."""
    tensors, _, start = read_header(path)
    t = tensors[name]
    raw = _read_raw(path, start, t)
    if t["dtype"] == "BF16":
        return bf16_to_f32(np.frombuffer(raw, "<u2")).reshape(t["shape"])
    simple = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "U8": "u1", "I16": "<i2",
              "U16": "<u2", "I32": "<i4", "U32": "<u4", "I64": "<i8", "U64": "<u8", "BOOL": "?"}
    if t["dtype"] in simple:
        return np.frombuffer(raw, simple[t["dtype"]]).reshape(t["shape"])
    return np.frombuffer(raw, np.uint8)


if __name__ == "__main__":          # pragma: no cover
    sys.exit("use: signcut weights / signcut expand / signcut info")
