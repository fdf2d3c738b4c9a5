"""The built wheel carries every file that `mlffd ops build` and `mlffd lammps build` read.

An editable install reads them from the checkout, so a file missing from the package data only
shows up after a regular `pip install .` (export/ops/csrc/cuda_utils.cuh was missing once). The
wheel is built from a copy of the sources into a temporary folder; nothing is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("distiller", "export", "lammps_plugin")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("build", "build-*", "__pycache__", "*.egg-info", "*.so")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=skip)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-q",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("mlffd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _relative(path: str | Path) -> str:
    return Path(path).resolve().relative_to(ROOT).as_posix()


def _build_inputs() -> set[str]:
    """Files the op and plugin builds read: the sources and headers the ops module names, the
    CUDA emulation, every local #include they pull in, and the plugin's CMake project."""
    from export import ops

    csrc = Path(ops.__file__).resolve().parent / "csrc"
    files = {Path(f) for f in ops.source_files(cuda=True)}
    files |= {csrc / name for name in ops._HEADERS}
    files.add(csrc / "emulation" / "cuda_emulation.cpp")  # export.ops.cuda_check.load_emulation
    plugin = ROOT / "lammps_plugin"
    files |= {plugin / "CMakeLists.txt", *(plugin / "src").iterdir()}
    todo = list(files)
    while todo:
        for name in re.findall(r'^\s*#\s*include\s+"([^"]+)"', todo.pop().read_text(), re.M):
            for folder in (csrc, plugin / "src"):
                candidate = folder / name
                if candidate.is_file() and candidate not in files:
                    files.add(candidate)
                    todo.append(candidate)
    return {_relative(f) for f in files}


def test_wheel_has_every_build_input(wheel_names):
    needed = _build_inputs()
    assert "export/ops/csrc/cuda_utils.cuh" in needed and "lammps_plugin/CMakeLists.txt" in needed
    missing = sorted(needed - wheel_names)
    assert not missing, f"the wheel lacks files the builds read (add them to package-data): {missing}"


def test_wheel_has_every_checked_in_source_file(wheel_names):
    """Everything under the two C++ source folders ships, so a new file cannot be forgotten."""
    folders = [ROOT / "export" / "ops" / "csrc", ROOT / "lammps_plugin" / "src"]
    present = {_relative(f) for folder in folders for f in folder.rglob("*")
               if f.is_file() and "__pycache__" not in f.parts}
    assert present, "no C++ sources found in the checkout"
    missing = sorted(present - wheel_names)
    assert not missing, f"the wheel lacks: {missing}"

