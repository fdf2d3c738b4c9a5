"""MACE from a local .model file (mace-torch pins e3nn 0.4.4, so it lives in an environment of its own)."""

from __future__ import annotations

import os
from pathlib import Path

from ase.data import chemical_symbols

from mlffd.errors import MLFFDError
from mlffd.teachers.adapter import TeacherCalculator, TeacherSpec, package_version, reject_options


def _weights(spec: TeacherSpec) -> tuple[bool, str]:
    path = os.environ.get("MLFFD_MACE_MODEL")
    if not path:
        return False, "pass model_path=PATH or set MLFFD_MACE_MODEL"
    return os.path.isfile(path), path


def _load(spec: TeacherSpec, device: str, **options) -> TeacherCalculator:
    reject_options(spec, options, {"model_path", "default_dtype"})
    model_path = options.get("model_path") or os.environ.get("MLFFD_MACE_MODEL")
    if not model_path:
        raise MLFFDError("teacher mace needs a local model file: pass model_path=PATH (or set MLFFD_MACE_MODEL)")
    if not os.path.isfile(model_path):
        raise MLFFDError(f"MACE model file not found: {model_path}")
    from mace.calculators import MACECalculator  # type: ignore[import-not-found]  # optional: imported on load

    inner = MACECalculator(
        model_paths=model_path, device=device, default_dtype=options.get("default_dtype", "float64")
    )
    zs = getattr(inner, "z_table", None)
    return TeacherCalculator(inner, spec, f"mace-torch {package_version('mace-torch')} {Path(model_path).name}",
                             elements=None if zs is None else {chemical_symbols[int(z)] for z in zs.zs})


SPECS = (TeacherSpec(
    "mace", "mace-torch", "mace", True, tuple(chemical_symbols[1:]),
    "MACE from a local .model file (option model_path or $MLFFD_MACE_MODEL); optional, "
    "mace-torch pins e3nn 0.4.4 so it needs its own environment",
    _load, _weights),)
