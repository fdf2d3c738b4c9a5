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
from mlffd.validate.properties.protocol import GOALS, Context, Property, failed_row, relative_row, row

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


def _vacancy_rows(result: dict) -> list[dict]:
    t, s = result["teacher"], result["student"]
    rows = []
    for element, tv in t["per_element"].items():
        label = f"E_vac({element})"
        if "failure" in s or s["per_element"][element]["E_vac_eV"] is None:
            reason = s.get("failure") or s["per_element"][element]["relax_failure"]
            rows.append(failed_row(label, "eV", tv["E_vac_eV"], reason))
            continue
        sv = s["per_element"][element]["E_vac_eV"]
        rows.append(row(label, "eV", tv["E_vac_eV"], sv, sv - tv["E_vac_eV"], "eV", GOALS["vacancy_eV"]))
    return rows


def _surface_rows(result: dict) -> list[dict]:
    t, s = result["teacher"], result["student"]
    label = "E_surf(" + "".join(str(i) for i in t["miller"]) + ")"
    if "failure" in s or s["E_surf_J_per_m2"] is None:
        return [failed_row(label, "J/m^2", t["E_surf_J_per_m2"], s.get("failure") or s["relax_failure"])]
    return [relative_row(label, "J/m^2", t["E_surf_J_per_m2"], s["E_surf_J_per_m2"], None)]


def _surface_miller(ctx: Context) -> tuple:
    return ctx.surface_miller or ((1, 0, 0) if ctx.crystal.cubic else (0, 0, 1))


VACANCY = Property("vacancy", lambda eq, calc, ctx: vacancies(eq, calc, ctx.crystal.elements, ctx.width, ctx.seed),
                   _vacancy_rows)
SURFACE = Property("surface", lambda eq, calc, ctx: surface(eq, calc, _surface_miller(ctx), ctx.width), _surface_rows)
