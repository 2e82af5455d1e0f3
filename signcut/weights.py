"""Model weights: compress a safetensors checkpoint tensor by tensor, and expand it back.

    >>> from signcut import weights
    >>> report = weights.compress("model.safetensors", "model.sct", bits_per_entry=8)
    >>> weights.expand("model.sct", "restored.safetensors")     # each tensor's own dtype

``compress`` takes one ``.safetensors`` file or a folder of shards with a
``*.safetensors.index.json``. Every floating tensor (F16, BF16, F32, F64) of two or more
dimensions that passes the filters is decomposed with :func:`signcut.decompose`; every other
tensor (1-D, integer, bool, F8, filtered out, or too small for one cut at the budget) is
copied through byte for byte.

Outputs, for ``out = OUT``:

``OUT``
    One signcut file (:func:`signcut.save`, a mapping ``key -> SignCut``), loadable with
    :func:`signcut.load`. Its ``__metadata__`` entry ``signcut_weights`` is a JSON object
    ``{"version": 1, "bits_per_entry", "ratio", "rtol" (null when not given), "effort",
    "seed", "outliers", "scales" and "calibration" (only when given: the scales and the
    statistics file's name), "passthrough": file name or null, "tensors": [{"name", "dtype",
    "shape", "kind": "signcut" | "passthrough", "key", "reason", "seed", "width", "sparse"
    (entries kept in the sparse part), "bits_per_entry", "rel_error", "high_error"}, ...]}``
    listing every tensor of the checkpoint in order (no timings: the same command writes the
    same bytes). ``key`` is the name inside the signcut file or the side file (the tensor
    name itself unless it holds ``'/'`` or is too long). Files of earlier versions of this
    module have ``outlier`` where ``high_error`` is now, and no ratio, rtol or effort.
``OUT.passthrough.safetensors``
    A plain safetensors file with the tensors copied through, in their original dtype
    (only written when there are any).
``OUT.report.csv``
    The per-tensor report: name, kind, dtype, shape, width, bits per entry, relative error,
    sparse_entries (kept in the sparse part), seconds, high_error (an error above
    ``HIGH_ERROR_FACTOR`` times the median) and a note.
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
import dataclasses
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
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("signcut.weights")

from signcut._atomic import PathError, atomic_write, check_output, open_regular
from signcut._budget import signs_nbytes, width_32, width_for_bits, width_for_bytes
from signcut import _safetensors as st
from signcut._safetensors import short_repr
from signcut._validate import thread_count
from signcut.calibration import calibration_stats, read_calibration  # noqa: F401
from signcut.calibration import fingerprint as calibration_fingerprint

__all__ = ["compress", "expand", "info", "Record", "Settings", "WeightsError", "HIGH_ERROR_FACTOR",
           "calibration_stats"]

FORMAT_KEY = "signcut_weights"
FORMAT_VERSION = 1
HIGH_ERROR_FACTOR = 2.0      # a tensor's error above this times the median is flagged
DEFAULT_BITS_PER_ENTRY = 8.0
PASSTHROUGH_SUFFIX = ".passthrough.safetensors"
REPORT_SUFFIX = ".report.csv"
PARTS_SUFFIX = ".parts"
PARTS_MARKER = ".signcut-parts"         # in a work folder: made by signcut weights
SIDE_KEY = "signcut_weights_passthrough"   # in a side file's metadata: the output it belongs to

_ITEMSIZE = st.ITEMSIZE          # safetensors dtype codes -> bytes per entry
_NUMPY = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_FLOAT = ("F16", "BF16", "F32", "F64")
_WORK_DTYPE = {"F16": np.dtype("<f2"), "BF16": np.dtype("<f4"), "F32": np.dtype("<f4"),
               "F64": np.dtype("<f8")}       # what a floating tensor is decomposed from
# what the file's metadata keeps of each tensor (the report adds the seconds)
_META_FIELDS = ("name", "dtype", "shape", "kind", "key", "reason", "seed", "width", "sparse",
                "bits_per_entry", "rel_error", "high_error")
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
        header, start, data_size = st.read_header(f, WeightsError, f"{path!r}: ")
    metadata = header.get("__metadata__") or {}
    return st.check_entries(header, data_size, WeightsError, f"{path!r}: "), metadata, start


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
                if os.fstat(f.fileno()).st_size > st.MAX_HEADER_BYTES:
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
    try:
        head = st.encode_header([(name, code, shape) for name, code, shape, _ in entries],
                                metadata)
    except ValueError as exc:
        raise WeightsError(f"cannot write {path!r}: {exc}") from None

    def chunks():
        for name, code, shape, produce in entries:
            data = memoryview(produce()).cast("B")
            if len(data) != math.prod(shape) * st.ITEMSIZE[code]:
                raise RuntimeError(f"tensor {name!r}: wrong number of bytes")
            yield data

    st.write(path, head, chunks)


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
    name, settings = task.name, task.settings
    raw = _read_raw(task.file, task.start, task.info)
    expected = dict(task.expected, sha256=hashlib.sha256(raw).hexdigest())
    existing = _part_record(task.part, expected)
    if existing is not None:
        return dict(existing, resumed=True)
    t0 = time.perf_counter()
    x = _to_array(raw, task.info)
    del raw
    kw = dict(settings.budget(task.info["dtype"]), seed=task.seed,
              effort=settings.effort if x.ndim == 2 else "default",     # tensors: plain greedy
              n_threads=task.n_threads)
    fit = {"scales": settings.scales} if settings.scales else {}
    if task.col_weights is not None:
        fit["col_weights"] = task.col_weights
    try:
        try:
            result = signcut.decompose(x, outliers=settings.outliers or None, **fit, **kw)
        except ValueError:      # the sparse part or scales left too little for one cut: none
            if not settings.outliers and not fit:
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
    signcut.save(task.part, {"tensor": result},
                 metadata={"weights_part": json.dumps(record)})
    return dict(record, resumed=False)


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
        pool = cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_exit_with_parent, initargs=(os.getpid(),))
        return pool, lambda: pool.shutdown(cancel_futures=True)
    return None, None


def _exit_with_parent(parent):
    """In a pool worker: end this process when ``parent`` is gone (a SIGKILLed command left its
    workers decomposing on). A daemon thread polls the parent's pid; the engine releases the
    GIL while it works."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="signcut-parent-watch").start()


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


@dataclass
class Record:
    """One tensor of the checkpoint and what ``compress`` does with it: a row of the report.
    ``compress`` returns and passes to ``progress`` these as dicts (``dataclasses.asdict``)."""
    name: str
    dtype: str                   # its safetensors dtype code
    shape: list
    kind: str                    # "signcut" or "passthrough"
    key: str                     # its name in the output (or in the side file)
    reason: str = ""             # why it is copied through
    seed: int = None             # compressed ones: tensor_seed(run seed, name)
    max_width: int = None        # compressed ones: the most cuts the budget allows
    width: int = None            # compressed ones, once done: the result
    sparse: int = None           # ... entries kept in its sparse part
    nbytes: int = None
    bits_per_entry: float = None
    rel_error: float = None
    seconds: float = None
    resumed: bool = False        # its part came from an earlier run
    high_error: bool = False     # error above HIGH_ERROR_FACTOR times the median

    @property
    def compressed(self):
        return self.kind == "signcut"


@dataclass
class _Task:
    """What a worker needs to decompose one tensor into its part file."""
    name: str
    file: str
    start: int
    info: dict
    settings: object
    seed: int
    n_threads: int
    expected: dict               # what the part must have been made from to be reused
    part: str
    col_weights: object = None


@dataclass(frozen=True)
class Settings:
    """How every tensor is decomposed: the budget (``bits_per_entry``, ``ratio`` against the
    tensor's stored bytes, ``rtol``; whichever comes first), the sparse part (a fraction or
    0), the search effort, the run seed and the scale vectors (``decompose(scales=...)``)."""
    bits_per_entry: float = None
    ratio: float = None
    rtol: float = None
    outliers: float = 0.0
    effort: str = "default"
    seed: int = 0
    scales: str = None

    def budget(self, dtype):
        """decompose's budget arguments for a tensor stored as ``dtype`` (a bfloat16 tensor is
        decomposed from float32: its ratio counts its own two bytes per entry)."""
        kw = {"bits_per_entry": self.bits_per_entry, "rtol": self.rtol}
        if self.ratio is not None:
            kw["ratio"] = self.ratio * _ITEMSIZE[dtype] / _WORK_DTYPE[dtype].itemsize
        return {k: v for k, v in kw.items() if v is not None}

    def max_width(self, dtype, shape):
        """The most cuts the storage budgets allow a tensor (before any sparse part); without
        one, the 32 bits per entry cap of decompose."""
        size = math.prod(shape)
        caps = [width_32(shape)] if self.bits_per_entry is None and self.ratio is None else []
        if self.bits_per_entry is not None:
            caps.append(width_for_bits(self.bits_per_entry * size, shape))
        if self.ratio is not None:
            caps.append(width_for_bytes(self.ratio * size * _ITEMSIZE[dtype], shape))
        return min(caps)

    def describe(self):
        """The budget in words, for reports."""
        parts = [f"{self.bits_per_entry:g} bits/entry" if self.bits_per_entry is not None else "",
                 f"ratio {self.ratio:g}" if self.ratio is not None else "",
                 f"rtol {self.rtol:g}" if self.rtol is not None else ""]
        return ", ".join(p for p in parts if p)


def _settings(bits_per_entry, ratio, rtol, outliers, effort, seed, scales):
    from signcut._api import EFFORTS, _outlier_fraction
    from signcut._scales import SCALES
    from signcut._validate import optional_float, optional_int
    bits_per_entry = optional_float(bits_per_entry, "bits_per_entry")
    ratio = optional_float(ratio, "ratio")
    rtol = optional_float(rtol, "rtol")
    if bits_per_entry is None and ratio is None and rtol is None:
        bits_per_entry = DEFAULT_BITS_PER_ENTRY
    if effort not in EFFORTS:
        raise ValueError(f"effort must be one of {', '.join(map(repr, EFFORTS))}, got {effort!r}")
    if scales is not None and scales not in SCALES:
        raise ValueError(f"scales must be None, {', '.join(map(repr, SCALES))}, got {scales!r}")
    return Settings(bits_per_entry, ratio, rtol, _outlier_fraction(outliers) or 0.0, effort,
                    optional_int(seed, "seed"), scales)


def _plan(src, out, settings, include, exclude, min_size, also_read=()):
    """Every tensor of the checkpoint with what will happen to it: ``(records, sources,
    inputs)``, where ``records`` are :class:`Record` and ``sources[name]`` the
    ``(file, data_start, info)`` it is read from. Checks the inputs and the outputs' paths
    (none may be an input, ``also_read`` included; nothing is written)."""
    try:
        inc = re.compile(include) if include else None
        exc_re = re.compile(exclude) if exclude else None
    except re.error as e:
        raise WeightsError(f"bad regular expression: {e}") from None
    entries, inputs = _scan(src)
    inputs = inputs + [os.fspath(p) for p in also_read]
    for path in (out, out + PASSTHROUGH_SUFFIX, out + REPORT_SUFFIX):
        _check_output(path, inputs)
    _check_output(out + PARTS_SUFFIX, inputs, folder=True)
    _check_parts(out + PARTS_SUFFIX)
    records, sources, used_keys, used_pass = [], {}, set(), set()
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
        elif settings.max_width(dtype, shape) < 1:
            reason = "budget affords no cut"
        if reason is None:
            rec = Record(name, dtype, list(shape), "signcut", _key(name, used_keys),
                         seed=tensor_seed(settings.seed, name),
                         max_width=settings.max_width(dtype, shape))
        else:
            rec = Record(name, dtype, list(shape), "passthrough", _key(name, used_pass),
                         reason=reason)
        records.append(rec)
        sources[name] = (path, start, info)
    if not any(rec.compressed for rec in records):
        reasons = statistics.multimode(rec.reason for rec in records) if records else []
        raise WeightsError(f"no tensor of {src!r} would be compressed ({len(records)} tensors; "
                           f"most common reason: {', '.join(reasons) or 'the file is empty'}): "
                           "check the budget and the filters")
    return records, sources, inputs


def _run(records, sources, settings, out, jobs, executor, scheduler, n_threads, progress,
         col_weights):
    """Decompose every tensor to compress into the work folder; fills the records."""
    parts = out + PARTS_SUFFIX
    parallel, close = _make_executor(jobs, executor, scheduler)
    try:
        made_parts = _open_parts(parts, out)
    except BaseException:
        if close is not None:
            close()
        raise
    n_threads = 1 if parallel is not None else thread_count(n_threads)
    tasks = []
    for rec in records:
        if not rec.compressed:
            continue
        path, start, info = sources[rec.name]
        expected = {"name": rec.name, "shape": rec.shape, "dtype": rec.dtype, "seed": rec.seed,
                    "settings": dataclasses.asdict(settings)}
        weights = col_weights.get(rec.name)      # tensors without calibration stay as they were
        if weights is not None:
            expected["col_weights"] = calibration_fingerprint(weights)
        tasks.append(_Task(rec.name, os.path.abspath(path), start, info, settings, rec.seed,
                           n_threads, expected, os.path.abspath(_part_path(parts, rec.name)),
                           weights))
    by_name = {rec.name: rec for rec in records}
    done = [0]

    def finished(result):
        rec = by_name[result["name"]]
        for k in ("width", "sparse", "nbytes", "bits_per_entry", "rel_error", "seconds",
                  "resumed"):
            setattr(rec, k, result[k])
        done[0] += 1
        log.info("%s: %s width %d, %.3f bits/entry, error %.4f%%, %d sparse entries, %.2f s%s",
                 printable(rec.name), _fmt_shape(rec.shape), rec.width, rec.bits_per_entry,
                 100 * rec.rel_error, rec.sparse, rec.seconds, " (resumed)" if rec.resumed else "")
        if progress:
            progress(dataclasses.asdict(rec), done[0], len(tasks))

    try:
        if parallel is None:
            for task in tasks:
                finished(_compress_part(task))
        else:
            futures = [parallel.submit(_compress_part, task) for task in tasks]
            for fut in cf.as_completed(futures):
                finished(fut.result())
    except BaseException:
        if made_parts and not done[0]:
            _close_parts(parts, set())     # nothing finished: leave nothing behind
        raise
    finally:
        if close is not None:
            close()
    return {os.path.basename(task.part) for task in tasks}


def _assemble(records, sources, settings, out, part_names, calibration):
    """Write OUT (the parts gathered), its side file and report; remove the work folder."""
    import signcut
    parts, side = out + PARTS_SUFFIX, out + PASSTHROUGH_SUFFIX
    compressed = {rec.key: signcut.load(_part_path(parts, rec.name))["tensor"]
                  for rec in records if rec.compressed}
    median = statistics.median(rec.rel_error for rec in records if rec.compressed)
    for rec in records:
        rec.high_error = bool(rec.compressed and median > 0
                              and rec.rel_error > HIGH_ERROR_FACTOR * median)
    passthrough = [rec for rec in records if not rec.compressed]
    if passthrough:
        write_safetensors(side, [
            (rec.key, sources[rec.name][2]["dtype"], rec.shape,
             (lambda src=sources[rec.name]: _read_raw(*src)))
            for rec in passthrough], metadata={SIDE_KEY: os.path.basename(out)})
    meta = {"version": FORMAT_VERSION, "bits_per_entry": settings.bits_per_entry,
            "ratio": settings.ratio, "rtol": settings.rtol, "effort": settings.effort,
            "seed": settings.seed, "outliers": settings.outliers,
            **({"scales": settings.scales} if settings.scales else {}),
            **({"calibration": os.path.basename(calibration)} if calibration else {}),
            "passthrough": os.path.basename(side) if passthrough else None,
            "tensors": [{k: getattr(rec, k) for k in _META_FIELDS} for rec in records]}
    signcut.save(out, compressed, metadata={FORMAT_KEY: json.dumps(meta)})   # no timings:
    if not passthrough and _is_side_file(side, out):                    # same run, same bytes
        os.unlink(side)                    # this output's side file from an earlier run
    _write_csv(out + REPORT_SUFFIX, records)
    _close_parts(parts, part_names)
    return side if passthrough else None


def compress(src, out, *, bits_per_entry=None, ratio=None, rtol=None, include=None,
             exclude=None, min_size=0, jobs=1, executor=None, scheduler=None, seed=0,
             effort="default", outliers="auto", n_threads=None, progress=None, dry_run=False,
             scales=None, calibration=None):
    """Compress a safetensors checkpoint into a signcut file (see the module docstring).

    Parameters
    ----------
    src : path
        A ``.safetensors`` file, or a folder holding shards and one ``*.safetensors.index.json``.
    out : path
        The signcut file to write; ``OUT.passthrough.safetensors``, ``OUT.report.csv`` and,
        while working, ``OUT.parts/`` go next to it.
    bits_per_entry, ratio, rtol : float, optional
        The budget of each compressed tensor, as in :func:`signcut.decompose` (whichever comes
        first; ``ratio`` counts the tensor's bytes in the checkpoint's own dtype). Default:
        ``bits_per_entry=8`` when none is given.
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
    effort : {"fast", "default", "best"}
        The search effort of :func:`signcut.decompose` for matrices (tensors of three or more
        dimensions run the tensor engine's plain greedy).
    n_threads : int, optional
        Threads of each decomposition when they run here (``jobs=1``, no executor); workers
        of a pool or a cluster use one thread each.
    outliers : "auto", float in [0, 1) or None
        Keep outliers of each tensor as a sparse part (``signcut.decompose(outliers=...)``),
        paid from the same budget. ``"auto"`` (default) keeps the entries beyond 8 robust
        standard deviations, none in a Gaussian tensor: measured by
        ``benchmarks/bench_outliers.py`` to cut the error about 3x on heavy-tailed synthetic
        weights at 8 bits per entry and to change nothing on Gaussian ones. 0 or None: off.
    progress : callable or bool, optional
        ``progress(record, done, total)`` after each tensor (the command line draws its bar
        with it); True prints a line per tensor on stderr. By default the library prints
        nothing; each tensor is also logged at INFO level on the ``signcut.weights`` logger.
    dry_run : bool
        Check everything and return the plan (each tensor's kind, reason and most cuts,
        ``max_width``, and the summary of what would be stored at most) without writing.
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
        length than the tensor's last axis, or a file naming none of the tensors to compress,
        is an error. Default None: nothing changes.

    A tensor whose budget affords no cut beside its sparse part or scales is compressed
    without them (and without its calibration weights).

    Returns
    -------
    dict
        ``{"path", "passthrough", "report", "tensors": [record, ...], "summary": {...}}``;
        a record holds the tensor's ``name``, ``dtype``, ``shape``, ``kind`` ("signcut" or
        "passthrough"), ``reason``, and for a compressed one ``width``, ``sparse`` (entries
        kept in its sparse part), ``bits_per_entry``, ``rel_error``, ``seconds`` and
        ``high_error`` (error above ``HIGH_ERROR_FACTOR`` times the median).

    Raises ``WeightsError`` (a ValueError) for bad input, naming the tensor when one tensor
    cannot be decomposed, and when no tensor would be compressed.
    """
    src, out = os.fspath(src), os.fspath(out)
    settings = _settings(bits_per_entry, ratio, rtol, outliers, effort, seed, scales)
    jobs = int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if progress is True:
        progress = _print_progress
    elif not progress:
        progress = None
    elif not callable(progress):
        raise TypeError("progress must be callable (progress(record, done, total)), True or "
                        "False")
    t_start = time.perf_counter()
    calibration = None if calibration is None else os.fspath(calibration)
    stats = None if calibration is None else read_calibration(calibration)
    records, sources, _ = _plan(src, out, settings, include, exclude, min_size,
                                also_read=[calibration] if calibration else [])
    col_weights = _calibration_weights(records, stats, calibration)
    if dry_run:
        return {"path": out, "passthrough": None, "report": None,
                "tensors": [dataclasses.asdict(rec) for rec in records],
                "summary": _summary(records, 0.0, planned=True)}
    part_names = _run(records, sources, settings, out, jobs, executor, scheduler, n_threads,
                      progress, col_weights)
    side = _assemble(records, sources, settings, out, part_names, calibration)
    summary = _summary(records, time.perf_counter() - t_start)
    log.info("%s", summary["line"])
    return {"path": out, "passthrough": side, "report": out + REPORT_SUFFIX,
            "tensors": [dataclasses.asdict(rec) for rec in records], "summary": summary}


def _calibration_weights(records, stats, calibration):
    """Per tensor to compress that the calibration statistics name, its ``col_weights``;
    checked before anything is written."""
    if stats is None:
        return {}
    todo = {rec.name: rec for rec in records if rec.compressed}
    if not set(todo) & set(stats):
        raise WeightsError(f"calibration file {calibration!r} names none of the "
                           f"{len(todo)} tensors to compress")
    unknown = sorted(set(stats) - set(todo))
    if unknown:
        log.warning("calibration names %d tensor(s) not compressed here, e.g. %s",
                    len(unknown), printable(unknown[0]))
    for name, weights in stats.items():
        shape = todo[name].shape if name in todo else None
        if shape is not None and shape[-1] != len(weights):
            raise WeightsError(f"calibration for {name!r} has {len(weights)} entries but the "
                               f"tensor's last axis has {shape[-1]} (shape {_fmt_shape(shape)})")
    return {name: stats[name] for name in todo if name in stats}


def _print_progress(record, done, total):
    print(f"[{done}/{total}] {printable(record['name'])}: {_fmt_shape(record['shape'])} width "
          f"{record['width']}, {record['bits_per_entry']:.3f} bits/entry, error "
          f"{record['rel_error']:.4%}, {record['sparse']} sparse entries, "
          f"{record['seconds']:.2f} s{' (resumed)' if record['resumed'] else ''}",
          file=sys.stderr, flush=True)


def _summary(records, seconds, planned=False):
    """Totals of a run (or, ``planned``, of a plan: the most each tensor may store)."""
    comp = [r for r in records if r.compressed]
    orig = sum(math.prod(r.shape) * _ITEMSIZE[r.dtype] for r in comp)
    if planned:
        stored = sum(signs_nbytes(r.max_width, r.shape) for r in comp)
    else:
        stored = sum(r.nbytes for r in comp)
    entries = sum(math.prod(r.shape) for r in comp)
    errors = [] if planned else [r.rel_error for r in comp]
    high = [r.name for r in comp if r.high_error]
    s = {"compressed": len(comp), "passthrough": len(records) - len(comp),
         "entries": entries, "original_bytes": orig, "stored_bytes": stored,
         "bits_per_entry": 8 * stored / entries if entries else 0.0,
         "median_error": statistics.median(errors) if errors else None,
         "max_error": max(errors) if errors else None, "high_error": high,
         "sparse_entries": sum(r.sparse or 0 for r in comp), "seconds": seconds}
    verb = "to compress" if planned else "compressed"
    line = (f"{s['compressed']} tensors {verb}, {s['passthrough']} copied through; "
            f"{s['bits_per_entry']:.3f} bits/entry ({stored} of {orig} bytes"
            f"{' at most' if planned else ''})")
    if errors:
        line += (f"; error median {s['median_error']:.4%}, max {s['max_error']:.4%}; "
                 f"{s['sparse_entries']} entries kept sparse; {len(high)} tensor(s) with an "
                 f"error above {HIGH_ERROR_FACTOR:g}x the median")
        if high:
            line += ": " + ", ".join(map(printable, high[:5])) + (" ..." if len(high) > 5
                                                                  else "")
    s["line"] = line + ("" if planned else f"; {seconds:.1f} s")
    return s


def _write_csv(path, records):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "kind", "dtype", "shape", "width", "bits_per_entry", "rel_error",
                "sparse_entries", "seconds", "high_error", "note"])
    for r in records:
        comp = r.compressed
        w.writerow([r.name, r.kind, r.dtype, _fmt_shape(r.shape),
                    r.width if comp else "",
                    f"{r.bits_per_entry:.6f}" if comp else "",
                    repr(r.rel_error) if comp else "",
                    r.sparse if comp else "",
                    f"{r.seconds:.4f}" if comp else "",
                    "yes" if r.high_error else "", r.reason or ""])

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
    if not is_int(meta.get("seed")) or not all(
            meta.get(k) is None or is_number(meta[k]) for k in ("bits_per_entry", "ratio", "rtol")):
        bad("bits_per_entry, ratio and rtol must be numbers or null, seed an integer")
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
        if kind == "signcut" and not (
                is_int(t.get("width")) and t["width"] >= 0 and is_number(t.get("bits_per_entry"))
                and is_number(t.get("rel_error")) and t["rel_error"] >= 0
                and (t.get("sparse") is None or (is_int(t["sparse"]) and t["sparse"] >= 0))):
            bad(f"tensor {name!r}: width, bits_per_entry, rel_error or sparse is not a "
                "non-negative number")
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


def expand(src, out, dtype=None):
    """Write a plain safetensors checkpoint from a file written by :func:`compress`.

    Compressed tensors are expanded (float32) and written in each tensor's original dtype
    (default, ``None``), or as ``dtype``: ``"bf16"`` (round to nearest even, dtype ``BF16`` in
    the header), ``"f16"`` or ``"f32"``. Copied-through tensors keep their original bytes and dtype.
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
