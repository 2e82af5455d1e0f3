"""Types of signcut._core, the compiled boundary to the C engine (signcut/_core.pyx and its
.pxi includes). Arrays are NumPy arrays: packed signs are (rows, ceil(d/64)) uint64, one bit
per entry (set = -1), tail bits zero; coefficients float32; errors float64."""
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Bits = NDArray[np.uint64]
Callback = Callable[[int, float], Any]
# (signs per mode, coef, errors, norm of the input, stop reason)
Result = tuple[list[Bits], NDArray[np.float32], NDArray[np.float64], float, str]

ISA_NAMES: tuple[str, ...]
MAX_NDIM: int
MAX_BLOCK: int
STOP_REASONS: dict[int, str]

# kernel tables and the CPU
def supported_kernels() -> list[str]: ...
def missing_kernel(name: str) -> str | None: ...
def use_kernels(name: str | None = None) -> str | None: ...
def active_kernels() -> str | None: ...
def cpu_info() -> dict[str, Any]: ...
def default_threads() -> int: ...

# decompositions
def decompose(R: NDArray[np.float32], max_width: int, rtol: float, max_seconds: float,
              block_size: int, max_sweeps: int, n_threads: int, seed_state: Any,
              callback: Callback | None = None, warm_start: bool = False, restarts: int = 1,
              refine: int = 0, growth_tol: float = 0.0,
              warm_signs: tuple[Bits, Bits] | None = None, first_cut: int = 0,
              ref_norm2: float = 0.0) -> Result: ...
def sparse_decompose(m: int, n: int, row_ptr: NDArray[np.int64], col_idx: NDArray[np.int32],
                     row_val: NDArray[np.float32], col_ptr: NDArray[np.int64],
                     row_idx: NDArray[np.int32], col_val: NDArray[np.float32], max_width: int,
                     rtol: float, max_seconds: float, block_size: int, max_sweeps: int,
                     n_threads: int, seed_state: Any, callback: Callback | None = None,
                     restarts: int = 1, warm_start: bool = False, growth_tol: float = 0.0,
                     init: tuple[Bits, Bits, NDArray[np.float32]] | None = None) -> Result: ...
def operator_decompose(m: int, n: int, norm2: float,
                       product: Callable[[bool, NDArray[np.float64]], NDArray[np.float32]],
                       max_width: int, rtol: float, max_seconds: float, block_size: int,
                       max_sweeps: int, n_threads: int, seed_state: Any,
                       callback: Callback | None = None, restarts: int = 1,
                       warm_start: bool = False, growth_tol: float = 0.0,
                       init: tuple[Bits, Bits, NDArray[np.float32]] | None = None) -> Result: ...

# computing with the signs
def expand(out: NDArray[np.float32], signs: Sequence[Bits], coef: NDArray[np.float32],
           sign: float = 1.0, n_threads: int = 1) -> NDArray[np.float32]: ...
def bits_transpose(bits: Bits, length: int) -> Bits: ...
def bits_lanes(bits: Bits, length: int) -> NDArray[np.uint32]: ...
def matrix_matmul(y: NDArray[np.float32], x: NDArray[np.float32], t_lanes: NDArray[np.uint32],
                  st_lanes: NDArray[np.uint32], coef: NDArray[np.float32], n_threads: int = 1,
                  isa: str | None = None) -> NDArray[np.float32]: ...
def sumsq(x: NDArray[np.float32]) -> float: ...
def frozen(a: np.ndarray) -> np.ndarray: ...
def sign_rows_dot(bits: Bits, x: NDArray[np.float32]) -> NDArray[np.float32]: ...
def cuts_inner(xsigns: Sequence[Bits], xcoef: NDArray[np.float32], ysigns: Sequence[Bits],
               ycoef: NDArray[np.float32], dims: Sequence[int], n_threads: int = 1,
               isa: str | None = None) -> float: ...

# single kernels, for the tests (signcut/_kernels.pxi and the others' kernel_* wrappers):
# the first argument names the kernel table
def __getattr__(name: str) -> Callable[..., Any]: ...
