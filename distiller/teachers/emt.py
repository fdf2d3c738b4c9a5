"""ASE's EMT: analytic and instant; for trying the pipeline and for tests, not a foundation model."""

from __future__ import annotations

import ase
from ase.calculators.emt import EMT

from mlffd.teachers.adapter import TeacherCalculator, TeacherSpec, reject_options


def _load(spec: TeacherSpec, device: str, **options) -> TeacherCalculator:
    reject_options(spec, options, set())
    return TeacherCalculator(EMT(), spec, f"ase {ase.__version__} EMT")


SPECS = (TeacherSpec(
    "emt", "ase", "ase", True, ("H", "C", "N", "O", "Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"),
    "ASE's EMT: analytic and instant, fcc metals (H, C, N, O for tests only); for trying the pipeline and "
    "for tests, not a foundation model", _load, lambda spec: (True, "analytic, no weights")),)
