"""Calibration statistics for compressing model weights with their inputs in mind.

A layer ``y = W x`` (``W`` of shape ``(out, in)``) errs by ``(W - approx) x``; over a batch of
inputs whose features have root mean squares ``d``, that error is about
``||(W - approx) diag(d)||_F`` (exactly, when the features are uncorrelated). So
``signcut.decompose(W, col_weights=d)`` fits what the layer computes on such inputs rather
than the weights entry by entry, and ``signcut weights --calibration stats.safetensors``
does it for every tensor the file names.

    >>> import numpy as np
    >>> from signcut import calibration
    >>> inputs = {"encoder.layer.0.attention.self.query.weight": np.random.randn(500, 384)}
    >>> stats = calibration.calibration_stats(inputs, "stats.safetensors")
    >>> stats["encoder.layer.0.attention.self.query.weight"].shape
    (384,)

The file is a plain safetensors file: per weight name, a float32 vector of the root mean
square of each input feature (the weight's last axis), with ``__metadata__``
``{"signcut_calibration": "rms"}``. Collecting the inputs is the user's part (a forward hook
in any framework, or the layer's inputs saved as arrays); no framework is needed here.
"""
import numbers
import os

import numpy as np

__all__ = ["calibration_stats", "read_calibration", "CALIBRATION_KEY"]

CALIBRATION_KEY = "signcut_calibration"


def _batches(name, value):
    """The arrays of one entry: an array, or an iterable of arrays (batches)."""
    if isinstance(value, np.ndarray) or isinstance(value, numbers.Number) \
            or hasattr(value, "__array__"):
        return [value]
    try:
        return iter(value)
    except TypeError:
        raise TypeError(f"calibration inputs of {name!r} must be an array or an iterable of "
                        f"arrays, got {type(value).__name__}") from None


def calibration_stats(inputs, path=None):
    """The root mean square of each input feature of each layer, from the layers' inputs.

    Parameters
    ----------
    inputs : mapping of str to array_like, or to an iterable of array_like
        Per weight name (as in the checkpoint, e.g. ``"model.layers.0.mlp.up_proj.weight"``),
        the inputs that weight multiplied: any number of leading axes (batch, tokens, ...)
        and the features on the last axis, of the length of the weight's last axis. An
        iterable of arrays (batches) is read one array at a time, so the inputs need not
        all be in memory; batches may have different leading shapes. Layers that share an
        input (queries, keys and values) may name the same array.
    path : str or os.PathLike, optional
        Also write the statistics there as a safetensors file (atomically), for
        ``signcut.weights.compress(..., calibration=path)`` and ``signcut weights
        --calibration path``.

    Returns
    -------
    dict of str to ndarray
        Per name, a float32 vector: ``sqrt(mean(x ** 2))`` over every leading index,
        accumulated in float64.

    Raises ``TypeError`` for non-numeric or complex inputs and ``ValueError`` for an empty
    mapping, a name without rows, features of different lengths, scalars, or NaN/Inf.
    """
    from signcut import weights
    if not hasattr(inputs, "items"):
        raise TypeError(f"inputs must map weight names to arrays, got {type(inputs).__name__}")
    stats = {}
    for name, value in inputs.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"calibration names must be non-empty str, got {name!r}")
        total, rows = None, 0
        for x in _batches(name, value):
            x = np.asarray(x)
            if x.dtype.kind == "c":
                raise TypeError(f"calibration inputs of {name!r} are complex ({x.dtype})")
            if x.dtype.kind not in "biuf":
                raise TypeError(f"calibration inputs of {name!r} must be real numbers, got "
                                f"dtype {x.dtype}")
            if x.ndim < 1:
                raise ValueError(f"calibration inputs of {name!r} need a feature axis (the "
                                 f"last), got a scalar")
            x = x.reshape(-1, x.shape[-1]) if x.shape[-1] else x.reshape(0, 0)
            if total is not None and x.shape[1] != len(total):
                raise ValueError(f"calibration inputs of {name!r} have {x.shape[1]} features "
                                 f"in one batch and {len(total)} in another")
            if total is None:
                total = np.zeros(x.shape[1])
            for i in range(0, len(x), 4096):            # float64 a block of rows at a time
                block = x[i:i + 4096].astype(np.float64)
                if not np.isfinite(block).all():
                    raise ValueError(f"calibration inputs of {name!r} hold NaN or Inf")
                total += np.einsum("ij,ij->j", block, block)
            rows += len(x)
        if total is None or not rows or not len(total):
            raise ValueError(f"calibration inputs of {name!r} are empty")
        stats[name] = np.sqrt(total / rows).astype(np.float32)
    if not stats:
        raise ValueError("calibration_stats got no inputs")
    if path is not None:
        weights.write_safetensors(
            os.fspath(path), [(name, "F32", v.shape, lambda v=v: np.ascontiguousarray(v, "<f4"))
                              for name, v in stats.items()],
            metadata={CALIBRATION_KEY: "rms"})
    return stats


def read_calibration(path):
    """The statistics of a calibration file (see :func:`calibration_stats`): per name, a
    float64 vector of non-negative finite weights. Raises ``signcut.weights.WeightsError``
    (one line) for a missing or malformed file."""
    from signcut import weights
    path = os.fspath(path)
    tensors, _, start = weights.read_header(path)
    if not tensors:
        raise weights.WeightsError(f"calibration file {path!r} holds no tensors")
    out = {}
    for name, info in tensors.items():
        if info["dtype"] not in ("F16", "BF16", "F32", "F64") or len(info["shape"]) != 1 \
                or not info["shape"][0]:
            raise weights.WeightsError(
                f"calibration file {path!r}: {name!r} must be a non-empty 1-D floating vector "
                f"(the RMS of each input feature), got {info['dtype']} {info['shape']}")
        v = weights._to_array(weights._read_raw(path, start, info), info).astype(np.float64)
        if not np.isfinite(v).all() or (v < 0).any() or not v.any():
            raise weights.WeightsError(
                f"calibration file {path!r}: {name!r} must hold finite non-negative values, "
                f"not all zero")
        out[name] = v
    return out


def fingerprint(v):
    """A short hash of a weight vector (part records compare it)."""
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(v, "<f8").tobytes()).hexdigest()[:16]
