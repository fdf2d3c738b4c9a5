"""The teacher registry: one name -> one ASE calculator wrapping a pretrained package model.

A new teacher is one adapter file in this folder (a loader and a weights finder, as `sevennet.py`,
and its `SPECS`) plus its module in the `_register_adapters` line below; nothing else in mlffd names teachers.
"""

from __future__ import annotations

from mlffd.errors import MLFFDError
from mlffd.teachers import chgnet, emt, mace, orb, sevennet
from mlffd.teachers.adapter import TeacherCalculator, TeacherSpec, installed, package_version, require

__all__ = ["TEACHERS", "TeacherCalculator", "TeacherSpec", "list_teachers", "load_teacher", "register_teacher",
           "teacher_elements", "teacher_info"]

TEACHERS: dict[str, TeacherSpec] = {}


def register_teacher(spec: TeacherSpec) -> TeacherSpec:
    if spec.name in TEACHERS:
        raise ValueError(f"teacher {spec.name!r} is registered twice")
    TEACHERS[spec.name] = spec
    return spec


def _register_adapters(*adapters) -> None:
    for adapter in adapters:
        for spec in adapter.SPECS:
            register_teacher(spec)


_register_adapters(sevennet, chgnet, orb, mace, emt)  # a new adapter file: its module here


def _spec(name: str) -> TeacherSpec:
    spec = TEACHERS.get(name)
    if spec is None:
        raise MLFFDError(f"unknown teacher {name!r}; known: {', '.join(TEACHERS)}")
    return spec


def teacher_info(name: str) -> dict:
    """What is known about a teacher without loading it."""
    spec = _spec(name)
    is_installed = installed(spec.module)
    weights, where = spec.weights(spec) if is_installed else (False, "not found")
    return {
        "name": spec.name,
        "package": spec.package,
        "installed": is_installed,
        "version": package_version(spec.package) if is_installed else None,
        "weights_available": bool(is_installed and weights),
        "weights": where,
        "available": bool(is_installed and weights),
        "conservative": spec.conservative,
        "elements": list(spec.elements),
        "n_elements": len(spec.elements),
        "note": spec.note if is_installed else f"{spec.package} not installed; " + spec.note,
    }


def list_teachers() -> list[dict]:
    return [teacher_info(name) for name in TEACHERS]


def teacher_elements(name: str) -> set[str]:
    return set(_spec(name).elements)


def load_teacher(name: str, device: str = "cpu", **options) -> TeacherCalculator:
    """Load a teacher as an ASE calculator. Options: Orb `checkpoint=PATH`, `precision=...`;
    MACE `model_path=PATH`."""
    spec = _spec(name)
    require(spec)
    if device not in ("cpu",) and not str(device).startswith(("cuda", "mps")):
        raise MLFFDError(f"unknown device {device!r} (cpu, cuda, cuda:N)")
    return spec.load(spec, device, **options)
