"""Build of signcut._core: the Cython wrapper plus the C engine.

Each instruction-set file is compiled with its own flags (never -march=native unless
SIGNCUT_NATIVE=1); OpenMP is used when the compiler supports it (SIGNCUT_OPENMP=0 turns it
off); SIGNCUT_SANITIZE=1 builds with AddressSanitizer and UBSan.
"""
import os
import platform
import shutil
import subprocess
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
IS_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")

# Files compiled with the common flags, and files that need their own instruction set.
COMMON_SOURCES = ["src/kernels_scalar.c", "src/dispatch.c", "src/engine.c", "src/matrix.c",
                  "src/tensor.c", "src/matmul.c", "src/sparse.c", "src/algebra.c"]
ISA_SOURCES = {
    "avx2": (["src/kernels_avx2.c"], ["-mavx2", "-mfma", "-mpopcnt", "-mf16c"]),
    "avx512": (["src/kernels_avx512.c"],
               ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vpopcntdq", "-mfma", "-mpopcnt",
                "-mf16c"]),
}


def env_flag(name, default):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def compiler_accepts(compiler, flags, code="int main(void){return 0;}\n"):
    """Whether the C compiler compiles and links a tiny program with these flags."""
    cc = compiler.compiler_so[0] if hasattr(compiler, "compiler_so") else "cc"
    cc = shutil.which(cc) or cc
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        try:
            r = subprocess.run([cc, *flags, src, "-o", os.path.join(tmp, "probe")],
                               capture_output=True)
        except OSError:
            return False
        return r.returncode == 0


class BuildExt(build_ext):
    def build_extensions(self):
        ext = self.extensions[0]
        base = ["-O3", "-std=c11", "-ffp-contract=off", "-fno-strict-aliasing"]
        link = []
        if env_flag("SIGNCUT_NATIVE", False):
            base.append("-march=native")
        if env_flag("SIGNCUT_OPENMP", True) and compiler_accepts(
                self.compiler, ["-fopenmp"], "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"):
            base.append("-fopenmp")
            link.append("-fopenmp")
        if env_flag("SIGNCUT_SANITIZE", False):
            san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
            base += san
            link += san
        elif compiler_accepts(self.compiler, ["-s"]):
            link.append("-s")               # a stripped extension: 0.5 MB instead of 3 MB
        macros = []
        objects = []
        if IS_X86:
            for isa, (sources, flags) in ISA_SOURCES.items():
                if not compiler_accepts(self.compiler, flags):
                    continue
                if isa == "avx512":
                    macros.append(("SIGNCUT_HAVE_AVX512", "1"))
                objects += self.compiler.compile(
                    sources, output_dir=self.build_temp, include_dirs=ext.include_dirs,
                    extra_postargs=base + flags, depends=ext.depends)
        ext.define_macros += macros
        ext.extra_objects = objects
        ext.extra_compile_args = base
        ext.extra_link_args = link
        super().build_extensions()


core = Extension(
    "signcut._core",
    sources=["signcut/_core.pyx"] + COMMON_SOURCES,
    include_dirs=["include", np.get_include()],
    # the instruction-set files are linked as extra objects: listed here so that editing one
    # relinks the extension
    depends=["include/signcut/signcut.h", "include/signcut/common.h", "include/signcut/driver.h",
             "signcut/_sparse.pxi"]
    + [src for sources, _ in ISA_SOURCES.values() for src in sources],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(
    ext_modules=cythonize([core], compiler_directives={"language_level": 3}),
    cmdclass={"build_ext": BuildExt},
)
