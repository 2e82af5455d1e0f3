"""Storage budgets: what a cut costs and how many cuts a budget affords (decompose, pictures
and checkpoints all count here)."""
import math

MAX_WIDTH = 2**40       # budgets beyond this are capped: a run is exact to float32 long before


def cut_bits(shape):
    """Bits one cut stores: a sign per entry of each mode and a float32 coefficient."""
    return sum(int(d) for d in shape) + 32


def signs_nbytes(width, shape):
    """Bytes of ``width`` cuts stored densely: ceil(width * sum(dims) / 8) + 4 * width."""
    return -(-width * sum(shape) // 8) + 4 * width


SCALE_ITEMSIZE = 2      # decompose stores scale vectors as float16 (benchmarks/bench_model.py)


def scales_nbytes(dims, itemsize=SCALE_ITEMSIZE):
    """Bytes of scale vectors (one number per entry) over modes of ``dims`` entries."""
    return itemsize * sum(int(d) for d in dims)


def width_for_bits(bits, shape):
    """The most cuts that store in ``bits`` bits (0 when none), at most MAX_WIDTH."""
    w = math.floor(min(float(MAX_WIDTH), bits / cut_bits(shape) * (1 + 1e-12)))
    return max(0, int(w))


def width_for_bytes(nbytes, shape):
    """The most cuts whose stored bytes (signs_nbytes) fit in ``nbytes`` (0 when none), at
    most MAX_WIDTH."""
    w = width_for_bits(8 * nbytes, shape)
    if w < MAX_WIDTH:                   # exact, beyond the estimate's float rounding
        while w > 0 and signs_nbytes(w, shape) > nbytes:
            w -= 1
        while signs_nbytes(w + 1, shape) <= nbytes:
            w += 1
    return w


def width_32(shape):
    """Cuts that take 32 bits per entry (at least one): what stores a float32 array's own
    size, the cap of a run without a storage budget."""
    return max(1, width_for_bits(32 * math.prod(int(d) for d in shape), shape))
