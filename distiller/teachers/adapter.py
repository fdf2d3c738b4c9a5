"""What every teacher adapter shares: its registry record (`TeacherSpec`) and the ASE calculator
that wraps the package's own (`TeacherCalculator`), which returns energy (eV), forces (eV/A) and, for
periodic cells, stress in ASE's convention (Voigt xx,yy,zz,yz,xz,xy; eV/A^3; stress = (1/V) dE/dstrain).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import Callable

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols

from mlffd.data.schema import ATOM_ENERGY_SUM_TOL
from mlffd.errors import MLFFDError
from mlffd.neighbours import periodic_3d
from mlffd.voigt import voigt


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    package: str  # distribution name
    module: str  # import name
    conservative: bool
    elements: tuple[str, ...]
    note: str
    load: Callable[..., "TeacherCalculator"]  # load(spec, device, **options)
    weights: Callable[["TeacherSpec"], tuple[bool, str]]  # (available, where they are or how to get them)


class TeacherCalculator(Calculator):
    """A teacher: delegates to the package's own ASE calculator, returns ASE-convention results."""

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self,
        inner: Calculator,
        spec: TeacherSpec,
        version: str,
        *,
        elements=None,
        dtype=None,
    ):
        super().__init__()
        self.inner = inner
        self.teacher_name = spec.name
        self.teacher_version = version
        self.elements = set(spec.elements if elements is None else elements)  # a loaded model may know fewer
        self.conservative = spec.conservative
        self._dtype = dtype  # torch default dtype to use around the inner call (Orb)

    def __repr__(self) -> str:
        return f"<teacher {self.teacher_name} ({self.teacher_version})>"

    def check_elements(self, symbols) -> None:
        missing = sorted(set(symbols) - self.elements, key=chemical_symbols.index)
        if missing:
            raise MLFFDError(
                f"teacher {self.teacher_name} does not cover element(s) {', '.join(missing)}"
            )

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        self.check_elements(atoms.get_chemical_symbols())
        periodic = periodic_3d(atoms)
        props = ["energy", "forces"] + (["stress"] if periodic else [])
        inner_atoms = atoms.copy()
        inner_atoms.calc = None
        if self._dtype is not None:
            import torch

            old = torch.get_default_dtype()
            torch.set_default_dtype(self._dtype)
            try:
                self.inner.calculate(inner_atoms, props, all_changes)
            finally:
                torch.set_default_dtype(old)
        else:
            self.inner.calculate(inner_atoms, props, all_changes)
        r = self.inner.results
        energy = float(np.asarray(r["energy"]).reshape(-1)[0])
        forces = np.asarray(r["forces"], dtype=np.float64).reshape(len(atoms), 3)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces.copy()}
        atom_energies = per_atom_energies(r, energy, len(atoms))
        if atom_energies is not None:
            self.results["energies"] = atom_energies
        if periodic and "stress" in r:
            self.results["stress"] = voigt(r["stress"])


def per_atom_energies(results: dict, energy: float, n_atoms: int) -> np.ndarray | None:
    """The inner calculator's per-atom energies (ASE's "energies"), or None when it has none or
    they do not sum to its total energy (a partition that does not is not the teacher's energy)."""
    values = results.get("energies")
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape != (n_atoms,) or not np.isfinite(values).all():
        return None
    if abs(values.sum() - energy) > ATOM_ENERGY_SUM_TOL:
        return None
    return values.copy()


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(spec: TeacherSpec) -> None:
    if not installed(spec.module):
        raise MLFFDError(
            f"teacher {spec.name} needs the package {spec.package}, which is not installed "
            f"(pip install {spec.package})"
        )


def reject_options(spec: TeacherSpec, options: dict, allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        allowed_s = ", ".join(sorted(allowed)) or "none"
        raise MLFFDError(
            f"teacher {spec.name} does not take option(s) {', '.join(unknown)} (allowed: {allowed_s})"
        )
