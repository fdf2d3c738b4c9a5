"""The reference ("teacher") calculator that validation and the speed benchmark compare a student with.

A reference is named like a teacher in the registry (`sevennet-0`, `chgnet`, `emt`, ...), or is
`mlffd:PATH`: another frozen mlffd model (for example the previous student, or the student itself,
in which case every deviation is exactly zero).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mlffd.calculator import MLFFDCalculator
from mlffd.errors import MLFFDError
from mlffd.export.contract import read_metadata
from mlffd.teachers.registry import TEACHERS, load_teacher, teacher_elements


def load_reference(name: str, device: str = "cpu", threads: int | None = None):
    """(ASE calculator, info dict with name, version, elements or None)."""
    if not name:
        raise MLFFDError("no teacher named (an empty teacher name)")
    if name.startswith("mlffd:"):
        path = name[len("mlffd:"):]
        if not Path(path).is_file():
            raise MLFFDError(f"reference model {path} does not exist")
        calc = MLFFDCalculator(path, device=device, threads=threads)
        return calc, {"name": name, "version": f"mlffd model {Path(path).name}", "elements": list(calc.elements)}
    if threads:
        torch.set_num_threads(threads)
    calc = load_teacher(name, device=device)
    return calc, {
        "name": getattr(calc, "teacher_name", name),
        "version": getattr(calc, "teacher_version", None),
        "elements": sorted(getattr(calc, "elements", []) or []) or None,
    }


def check_reference_name(name: str) -> None:
    """Refuse unknown reference names before any expensive work."""
    if name.startswith("mlffd:"):
        if not Path(name[len("mlffd:"):]).is_file():
            raise MLFFDError(f"reference model {name[len('mlffd:'):]} does not exist")
        return
    if name not in TEACHERS:
        raise MLFFDError(f"unknown teacher {name!r}; known: {', '.join(TEACHERS)} (or mlffd:PATH)")


def reference_elements(name: str) -> set[str] | None:
    """Elements a reference covers, without loading it (None: unknown until loaded)."""
    if name.startswith("mlffd:"):
        return set(read_metadata(name[len("mlffd:"):])["elements"])
    return teacher_elements(name)
