"""NumPy references for the tests: a plain greedy signed cut decomposition and kernel oracles."""
import numpy as np


def greedy(A, width, seed=0, max_sweeps=1000):
    """Plain greedy signed cuts of a matrix in float64: random start, alternate while the value
    grows. Returns the relative error after each cut."""
    rng = np.random.default_rng(seed)
    R = np.array(A, dtype=np.float64)
    m, n = R.shape
    norm2 = (R ** 2).sum()
    errors = []
    for _ in range(width):
        t = rng.choice([-1.0, 1.0], n)
        u = R @ t
        s = np.where(u < 0, -1.0, 1.0)
        value = np.abs(u).sum()
        for _ in range(max_sweeps):
            v = R.T @ s
            if np.abs(v).sum() <= value:
                break
            t = np.where(v < 0, -1.0, 1.0)
            value = np.abs(v).sum()
            u = R @ t
            if np.abs(u).sum() <= value:
                break
            s = np.where(u < 0, -1.0, 1.0)
            value = np.abs(u).sum()
        R -= (value / (m * n)) * np.outer(s, t)
        errors.append(np.sqrt((R ** 2).sum() / norm2))
    return np.array(errors)


def pack(signs):
    """(k, d) array of +1/-1 -> (k, ceil(d/64)) uint64, bit set for -1."""
    signs = np.atleast_2d(signs)
    k, d = signs.shape
    words = (d + 63) // 64
    flags = np.zeros((k, words * 64), np.uint8)
    flags[:, :d] = signs < 0
    return np.packbits(flags, axis=1, bitorder="little").view("<u8").astype(np.uint64).reshape(k, words)


def unpack(bits, d):
    bits = np.atleast_2d(bits)
    flags = np.unpackbits(np.ascontiguousarray(bits, "<u8").view(np.uint8).reshape(len(bits), -1),
                          axis=1, bitorder="little")
    return 1.0 - 2.0 * flags[:, :d].astype(np.float64)


def random_signs(rng, k, d):
    return rng.choice([-1.0, 1.0], size=(k, d))


def greedy_tensor(X, width, seed=0, max_sweeps=1000):
    """Plain greedy signed cuts of a tensor of any order in float64 with einsum contractions.
    Returns the relative error after each cut."""
    rng = np.random.default_rng(seed)
    R = np.array(X, dtype=np.float64)
    k, N = R.ndim, R.size
    letters = "abcdefghijklmnopqrstuvwxyz"[:k]
    norm2 = (R ** 2).sum()
    errors = []
    for _ in range(width):
        signs = [rng.choice([-1.0, 1.0], d) for d in R.shape]
        value, quiet, a = -1.0, 0, 0
        for _ in range(max_sweeps * k):
            others = ",".join(c for i, c in enumerate(letters) if i != a)
            spec = letters + ("," + others if others else "") + "->" + letters[a]
            u = np.einsum(spec, R, *[s for i, s in enumerate(signs) if i != a])
            if np.abs(u).sum() > value * (1 + 1e-9) or value < 0:
                signs[a] = np.where(u < 0, -1.0, 1.0)
                value = np.abs(u).sum()
                quiet = 0
            else:
                quiet += 1
                if quiet >= k - 1:
                    break
            if k == 1:
                break
            a = (a + 1) % k
        outer = signs[0]
        for s in signs[1:]:
            outer = np.multiply.outer(outer, s)
        R -= value / N * outer
        errors.append(np.sqrt((R ** 2).sum() / norm2))
    return np.array(errors)
