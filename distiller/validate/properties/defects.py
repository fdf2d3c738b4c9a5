"""Point defects and surfaces, relaxed at fixed cell in a model's own equilibrium crystal.

Vacancy formation energy of element X in a supercell of N atoms:
    E_vac(X) = E(N-1, relaxed) - E(N) + E(N) / N
the standard formula for an elemental crystal (E(N-1) - (N-1)/N E(N)); for a compound it takes the
mean energy per atom as X's chemical potential, a convention, identical for student and teacher.
Surface energy of a slab with two faces of area A: (E_slab - n E_bulk_per_atom) / (2 A), J/m^2.
"""

from __future__ import annotations

import math

import numpy as np
from ase.units import J, m

from mlffd.relax import relax
from mlffd.validate.properties.crystal import DEFECT_FMAX, Equilibrium, perpendicular_widths, repeats_for_width

SYMMETRY_BREAK_A = 0.02  # seeded displacement so a relaxation can leave a symmetric saddle
EV_PER_A2_IN_J_PER_M2 = 1.0 / (J / m**2)


def vacancies(eq: Equilibrium, calc, elements: list[str], width: float, seed: int = 0) -> dict:
    """Relaxed vacancy formation energy of each element (the first atom of it is removed)."""
    repeats = repeats_for_width(eq.unit, width)
    bulk = eq.unit.repeat(repeats)
    bulk.calc = calc
    n = len(bulk)
    e_bulk = float(bulk.get_potential_energy())
    out = {"supercell": list(repeats), "n_atoms": n, "per_element": {}}
    for k, element in enumerate(elements):
        defect = bulk.copy()
        del defect[[a.index for a in defect if a.symbol == element][0]]
        rng = np.random.default_rng(seed + k)
        defect.positions += rng.normal(0.0, SYMMETRY_BREAK_A, size=defect.positions.shape)
        r = relax(defect, calc, fmax=DEFECT_FMAX)
        out["per_element"][element] = {
            "E_vac_eV": float(r.energy - e_bulk + e_bulk / n) if r.failure is None else None,
            "relaxed": r.converged, "steps": r.steps, "relax_failure": r.failure,
        }
    first = out["per_element"][elements[0]]
    out["E_vac_eV"] = first["E_vac_eV"]
    return out


def surface(eq: Equilibrium, calc, miller: tuple[int, int, int], width: float) -> dict:
    """Energy of a relaxed slab at least `width` thick with `width` of vacuum (periodic cell)."""
    from ase.build import surface as build_surface

    one = build_surface(eq.unit, miller, 1, vacuum=None, periodic=True)
    layers = max(2, math.ceil(width / perpendicular_widths(one.cell.array)[2]))
    slab = build_surface(eq.unit, miller, layers, vacuum=0.5 * width, periodic=True)
    r = relax(slab, calc, fmax=DEFECT_FMAX)
    area = float(np.linalg.norm(np.cross(slab.cell.array[0], slab.cell.array[1])))
    energy = None
    if r.failure is None:
        energy = (r.energy - len(slab) * eq.energy_per_atom) / (2.0 * area) * EV_PER_A2_IN_J_PER_M2
    return {"miller": list(miller), "layers": layers, "n_atoms": len(slab), "area_A2": area,
            "E_surf_J_per_m2": energy, "relaxed": r.converged, "steps": r.steps, "relax_failure": r.failure}
