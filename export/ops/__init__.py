"""The mlffd custom op library (`torch.ops.mlffd.*`), built on first use.

    from mlffd.export import ops
    ops.load_library()            # builds (once, ~1-2 min) and loads; returns the .so path
    rowptr, nb_order, nb_start = torch.ops.mlffd.edge_graph(centre, neighbour, n_nodes)

Ops (C++ sources in `csrc/`, see docs/custom_ops.md), used by the frozen student (export/fused.py):
  mlffd::edge_graph / radial_spline / spline_conv   (spline_edge.cpp, spline_edge_cuda.cu)
  mlffd::conv_scatter_h / edge_forces_virial         (fused_edge.cpp, fused_edge_cuda.cu)
  mlffd::interaction_node                            (node_update.cpp, a device-generic ATen composite)
  mlffd::build_info() -> str
C++ autograd, first-order gradients only; training uses the pure-PyTorch `mlffd.model.kernels`.
Kernels: CPU (OpenMP via at::parallel_for), Autograd (C++), CUDA (built when torch has CUDA
and CUDA_HOME is set; `mlffd.export.ops.cuda_check` compiles them with nvcc on machines without either).
`mlffd.model.kernels` holds the pure-PyTorch reference the ops must match.

The build cache is `$MLFFD_OPS_DIR`, else `~/.cache/mlffd/ops/torch-<torch version>`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import torch

__all__ = ["LIBRARY_NAME", "available", "build_directory", "cuda_kernels_built", "library_path", "load_library",
           "source_files"]

LIBRARY_NAME = "mlffd_ops"

_CSRC = Path(__file__).resolve().parent / "csrc"
_CPP_SOURCES = ("op_checks.cpp", "fused_edge.cpp", "spline_edge.cpp", "node_update.cpp")
_CUDA_SOURCES = ("fused_edge_cuda.cu", "spline_edge_cuda.cu")
_HEADERS = ("fused_edge.h", "spline_edge.h", "spline_conv_cpu.h", "sh_monomials.h", "kernel_math.h", "op_schemas.h",
            "op_support.h", "cuda_utils.cuh")
# -fno-math-errno, -fno-trapping-math: sqrt without its errno branch and selects over divisions, so
# that the kernels' loops over edges vectorise (no value changes: nothing reads errno or FP traps)
_CFLAGS = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
_LDFLAGS = ["-fopenmp"]

_lock = threading.Lock()
_loaded: str | None = None
_error: str | None = None


def source_files(cuda: bool = False) -> list[str]:
    """Absolute paths of the C++ sources (pure libtorch: no Python, no pybind), plus the CUDA
    source when `cuda`. Headers live in the same folder (`csrc/`): add it to the include path."""
    names = _CPP_SOURCES + (_CUDA_SOURCES if cuda else ())
    return [str(_CSRC / name) for name in names]


def build_directory() -> str:
    """Where the library is built: `$MLFFD_OPS_DIR`, else `~/.cache/mlffd/ops/torch-<version>`."""
    env = os.environ.get("MLFFD_OPS_DIR")
    if env:
        return str(Path(env).expanduser().resolve())
    return str(Path.home() / ".cache" / "mlffd" / "ops" / f"torch-{torch.__version__}")


def library_path() -> str:
    """Path of the shared library (`<build_directory>/mlffd_ops.so`); it exists once built.
    C++ hosts `dlopen(path, RTLD_NOW | RTLD_GLOBAL)` it before `torch::jit::load`."""
    return str(Path(build_directory()) / f"{LIBRARY_NAME}.so")


def _with_cuda() -> bool:
    if not torch.cuda.is_available():
        return False
    from torch.utils.cpp_extension import CUDA_HOME

    return CUDA_HOME is not None


def _fingerprint(with_cuda: bool) -> str:
    h = hashlib.sha256()
    h.update(f"torch {torch.__version__} cuda {with_cuda} cflags {_CFLAGS} ldflags {_LDFLAGS}\n".encode())
    for name in _CPP_SOURCES + _HEADERS + (_CUDA_SOURCES if with_cuda else ()):
        h.update(name.encode())
        h.update((_CSRC / name).read_bytes())
    return h.hexdigest()


def _ops_registered() -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("mlffd::edge_graph", "CPU")
    except Exception:
        return False


def load_library(verbose: bool = False) -> str:
    """Build the library if needed, load it into this process, and return its path.

    Idempotent: later calls return at once. A build whose sources, flags and torch version match
    the stamp in the build directory is loaded directly, without invoking the compiler or ninja."""
    global _loaded, _error
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        if _ops_registered():  # loaded by other means (e.g. torch.ops.load_library(path) directly)
            mine = [p for p in torch.ops.loaded_libraries if Path(p).name.startswith(LIBRARY_NAME)]
            _loaded = mine[0] if mine else library_path()
            return _loaded
        with_cuda = _with_cuda()
        build_dir = Path(build_directory())
        so = Path(library_path())
        stamp = build_dir / f"{LIBRARY_NAME}.stamp"
        fingerprint = _fingerprint(with_cuda)
        try:
            if so.is_file() and stamp.is_file() and stamp.read_text().strip() == fingerprint:
                torch.ops.load_library(str(so))
            else:
                from torch.utils.cpp_extension import load

                build_dir.mkdir(parents=True, exist_ok=True)
                cflags = list(_CFLAGS) + (["-DMLFFD_WITH_CUDA"] if with_cuda else [])
                path = load(
                    name=LIBRARY_NAME,
                    sources=source_files(cuda=with_cuda),
                    extra_cflags=cflags,
                    extra_cuda_cflags=["-O3", "-DMLFFD_WITH_CUDA"] if with_cuda else None,
                    extra_ldflags=list(_LDFLAGS),
                    extra_include_paths=[str(_CSRC)],
                    build_directory=str(build_dir),
                    with_cuda=with_cuda,
                    is_python_module=False,
                    verbose=verbose,
                )
                so = Path(path)
                tmp = stamp.with_suffix(f".stamp.{os.getpid()}")
                tmp.write_text(fingerprint + "\n")
                os.replace(tmp, stamp)
        except Exception as exc:
            _error = f"{type(exc).__name__}: {exc}"
            raise
        if not _ops_registered():
            _error = f"{so} loaded but did not register mlffd::edge_graph"
            raise RuntimeError(_error)
        _loaded = str(so)
        _error = None
        return _loaded


def cuda_kernels_built() -> bool:
    """True when the loaded library has its CUDA kernels (built with CUDA torch and CUDA_HOME)."""
    load_library()
    return "cuda=1" in torch.ops.mlffd.build_info()


def available() -> bool:
    """True when the library is loaded or can be built and loaded now. Never raises."""
    try:
        load_library()
        return True
    except Exception:  # noqa: BLE001 - compiler errors, missing toolchain, bad cache directory
        return False


def last_error() -> str | None:
    """Why the last load_library() failed (None after a success)."""
    return _error
