"""Relaxing a structure with any ASE calculator (teacher or student): where `mlffd generate`
centres its samples (`relax=True`) and where every validated property starts."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from mlffd.errors import MLFFDError

MAX_STEPS = 300


@dataclass
class Relaxed:
    atoms: Atoms  # the relaxed structure, calculator detached
    energy: float  # eV
    converged: bool
    steps: int
    stress: np.ndarray | None = None  # eV/A^3, ASE Voigt order, periodic cells only
    failure: str | None = None  # the calculator refused a structure on the way (atoms collapsed)


def relax(atoms: Atoms, calc, *, fmax: float, cell: str = "fixed", steps: int = MAX_STEPS) -> Relaxed:
    """BFGS relaxation of the ions, and of the cell when `cell` is `hydrostatic` (shape kept),
    `full` (shape and volume) or `shape` (shape at constant volume)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    work = atoms.copy()
    work.calc = calc
    if cell == "fixed":
        target = work
    elif cell in ("hydrostatic", "full", "shape"):
        target = FrechetCellFilter(work, hydrostatic_strain=cell == "hydrostatic", constant_volume=cell == "shape")
    else:
        raise ValueError(f"unknown cell mode {cell!r}")
    optimizer = BFGS(target, logfile=None)
    failure = None
    stress = None
    try:
        with warnings.catch_warnings():
            # FrechetCellFilter's matrix log near the identity: scipy flags round-off of ~1e-12 as
            # "inaccurate", a line per relaxation in every distill log that says nothing
            warnings.filterwarnings("ignore", message="logm result may be inaccurate", category=RuntimeWarning)
            converged = bool(optimizer.run(fmax=fmax, steps=steps))
        energy = float(work.get_potential_energy())
        if np.all(work.pbc):
            stress = np.array(work.get_stress(voigt=True))
    except MLFFDError as exc:  # e.g. atoms pushed on top of each other by a wrong potential
        converged, energy, failure = False, float("nan"), str(exc)
    out = work.copy()
    out.calc = None
    return Relaxed(out, energy, converged, optimizer.nsteps, stress, failure)
