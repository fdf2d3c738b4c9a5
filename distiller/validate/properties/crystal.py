"""The crystal a property suite works on, and the equilibrium (mlffd.relax) every property starts from.

Each model (teacher or student) relaxes the same starting crystal to its OWN equilibrium; every
property is then computed at that model's equilibrium, as a user of that model would compute it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols, covalent_radii

from mlffd.errors import MLFFDError
from mlffd.neighbours import periodic_3d
from mlffd.relax import relax

# Relaxations: forces in eV/A (for cell filters also the cell's generalised forces).
EQUILIBRIUM_FMAX = 1e-3
IONS_FMAX = 5e-4  # ions in a strained or compressed cell (elastic constants, EOS)
DEFECT_FMAX = 0.01  # vacancies and surfaces: energies converge long before the forces


@dataclass
class Crystal:
    """A starting structure: `unit` for the EOS and elastic constants, `primitive` for phonons."""

    name: str
    unit: Atoms
    primitive: Atoms  # the unit cell itself when no smaller cell is known
    cubic: bool  # cubic symmetry: hydrostatic relaxation, C11/C12/C44 reported
    source: str

    @property
    def elements(self) -> list[str]:
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in sorted(set(self.unit.numbers))]


_CUBIC_BUILTINS = {"si", "ge", "cu", "al"}


def load_crystal(spec: str) -> Crystal:
    """A built-in system name (`si`, `cu`, `sio2`, ...), a structure file of one structure, or
    `FILE@N` (structure N of several) as the unit cell. Supercell suffixes are refused: every
    property builds the supercell it needs; so is a file of several structures (which one?)."""
    from mlffd.data.systems import BUILTIN_SYSTEMS, PRIMITIVE_CELLS, load_one_structure, load_system

    name = spec.lower()
    if ":" in name and name.split(":")[0] in BUILTIN_SYSTEMS:
        raise MLFFDError(f"system {spec!r}: the property suite takes a unit cell (give "
                         f"{name.split(':')[0]!r}); each property builds the supercell it needs")
    if name in BUILTIN_SYSTEMS:
        unit = load_system(f"{name}:1x1x1").images[0]
        primitive = PRIMITIVE_CELLS[name]() if name in PRIMITIVE_CELLS else unit.copy()
        return Crystal(name, unit, primitive, name in _CUBIC_BUILTINS, f"built-in {name}")
    system = load_one_structure(spec, "the property suite")
    unit = system.images[0]
    if not periodic_3d(unit):
        raise MLFFDError(f"{spec}: the property suite needs a crystal (periodic in x, y and z)")
    return Crystal(system.name, unit, unit.copy(), _looks_cubic(unit), system.source)


def _looks_cubic(atoms: Atoms) -> bool:
    """A cubic cell whose space group (spglib, when installed) is cubic (numbers 195-230)."""
    lengths, angles = atoms.cell.cellpar()[:3], atoms.cell.cellpar()[3:]
    if np.ptp(lengths) > 1e-6 * lengths.max() or np.abs(angles - 90.0).max() > 1e-6:
        return False
    try:
        import spglib
    except ImportError:
        return False
    data = spglib.get_symmetry_dataset((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers), symprec=1e-3)
    return data is not None and data.number >= 195


def default_min_distance(symbols) -> float:
    """Closer pairs than this mean a collapsed structure: 0.45 x the smallest sum of covalent radii
    (1.0 A for Si-Si, 1.19 A for Cu-Cu, 0.59 A for O-O)."""
    zs = sorted({chemical_symbols.index(s) for s in symbols})
    r = min(covalent_radii[z] for z in zs)
    return round(0.45 * 2.0 * float(r), 3)


def pair_distances(atoms: Atoms, r_max: float) -> np.ndarray:
    """All pair distances below r_max (each pair once per direction), periodic images included."""
    from mlffd.neighbours import NeighbourList

    pbc = np.asarray(atoms.pbc, dtype=bool)
    index, shift = NeighbourList(r_max).compute(atoms.positions, atoms.cell.array, pbc)
    if index.shape[1] == 0:
        return np.zeros(0)
    vec = atoms.positions[index[1]] - atoms.positions[index[0]] + shift
    return np.linalg.norm(vec, axis=1)




@dataclass
class Equilibrium:
    """A model's own equilibrium: relaxed unit cell and the primitive cell strained to match."""

    unit: Atoms
    primitive: Atoms
    energy_per_atom: float
    converged: bool


def equilibrium(crystal: Crystal, calc) -> Equilibrium:
    """Relax the unit cell (cell and ions), then carry its deformation over to the primitive cell
    and relax the primitive's ions there."""
    unit = relax(crystal.unit, calc, fmax=EQUILIBRIUM_FMAX, cell="hydrostatic" if crystal.cubic else "full")
    if unit.failure:
        raise MLFFDError(f"relaxing {crystal.name} failed: {unit.failure}")
    ratio = unit.atoms.get_volume() / crystal.unit.get_volume()
    floor = default_min_distance(crystal.unit.get_chemical_symbols())
    close = pair_distances(unit.atoms, floor)
    if len(close) or not 0.5 < ratio < 2.0:  # no minimum near the crystal: supercells would explode
        found = f"two atoms {close.min():.2f} A apart" if len(close) else f"its volume changed {ratio:.2f}-fold"
        raise MLFFDError(f"relaxing {crystal.name} collapsed the crystal ({found}): no equilibrium near it")
    deformation = np.linalg.solve(crystal.unit.cell.array, unit.atoms.cell.array)  # relaxed = unit @ F
    if len(crystal.primitive) == len(crystal.unit):
        primitive = unit.atoms.copy()
    else:
        strained = crystal.primitive.copy()
        strained.set_cell(crystal.primitive.cell.array @ deformation, scale_atoms=True)
        primitive = relax(strained, calc, fmax=EQUILIBRIUM_FMAX).atoms
    return Equilibrium(unit.atoms, primitive, unit.energy / len(unit.atoms), unit.converged)


def perpendicular_widths(cell) -> np.ndarray:
    """Distances between opposite faces of a cell (A)."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    return np.array([volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)])


def repeats_for_width(atoms: Atoms, width: float) -> tuple[int, int, int]:
    """The smallest supercell whose faces are at least `width` apart."""
    return tuple(max(1, math.ceil(width / w - 1e-9)) for w in perpendicular_widths(atoms.cell.array))
