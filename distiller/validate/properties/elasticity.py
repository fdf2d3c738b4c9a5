"""Equation of state and elastic constants of a model at its own equilibrium.

Units: volumes A^3 per atom, energies eV per atom, moduli GPa. Stress follows ASE (positive is
tensile, sigma = (1/V) dE/d(strain), Voigt order xx yy zz yz xz xy), so C_ij = d sigma_i / d eps_j
with engineering shear strains (eps_4 = 2 eps_yz).
"""

from __future__ import annotations

import numpy as np
from ase.units import GPa

from mlffd.errors import MLFFDError
from mlffd.relax import relax
from mlffd.validate.properties.crystal import IONS_FMAX, Crystal, Equilibrium
from mlffd.validate.properties.protocol import Property, failed_row, relative_row

EOS_SPAN = 0.06  # +-6 % in volume
EOS_POINTS = 11
STRAIN = 0.005  # +-0.5 %, central differences
_SHEAR_PAIRS = ((1, 2), (0, 2), (0, 1))  # Voigt 4, 5, 6


def equation_of_state(eq: Equilibrium, calc, crystal: Crystal, span: float = EOS_SPAN,
                      points: int = EOS_POINTS) -> dict:
    """Energy over volume with the ions relaxed at each volume (and, for non-cubic cells, the cell
    shape at constant volume: quartz compresses by rotating its tetrahedra), Birch-Murnaghan fit."""
    from ase.eos import EquationOfState

    n = len(eq.unit)
    volumes, energies, converged = [], [], True
    for x in np.linspace(-span, span, points):
        scaled = eq.unit.copy()
        scaled.set_cell(eq.unit.cell.array * (1.0 + x) ** (1.0 / 3.0), scale_atoms=True)
        r = relax(scaled, calc, fmax=IONS_FMAX, cell="fixed" if crystal.cubic else "shape")
        if r.failure:
            raise MLFFDError(f"relaxing the crystal at {100 * x:+.1f} % volume failed: {r.failure}")
        converged &= r.converged
        volumes.append(r.atoms.get_volume() / n)
        energies.append(r.energy / n)
    fit = EquationOfState(volumes, energies, eos="birchmurnaghan")
    v0, e0, bulk = fit.fit(warn=False)
    out = {
        "v0_A3_per_atom": float(v0),
        "e0_eV_per_atom": float(e0),
        "B_GPa": float(bulk / GPa),
        "Bprime": float(fit.eos_parameters[2]),
        "volumes_A3_per_atom": volumes,
        "energies_eV_per_atom": energies,
        "relaxed": bool(converged),
    }
    if crystal.cubic:  # the unit cell is the conventional cube
        out["a0_A"] = float((v0 * n) ** (1.0 / 3.0))
    return out


def strain_matrix(component: int, magnitude: float) -> np.ndarray:
    """Symmetric strain tensor for one Voigt component (engineering shear for 4-6)."""
    eps = np.zeros((3, 3))
    if component < 3:
        eps[component, component] = magnitude
    else:
        a, b = _SHEAR_PAIRS[component - 3]
        eps[a, b] = eps[b, a] = magnitude / 2.0
    return eps


def elastic_constants(eq: Equilibrium, calc, crystal: Crystal, strain: float = STRAIN) -> dict:
    """The 6x6 tensor from +- strains of the equilibrium cell with relaxed ions, and its
    Voigt-Reuss-Hill averages (C11/C12/C44 as cubic averages for cubic crystals)."""
    c = np.zeros((6, 6))
    converged = True
    for j in range(6):
        stresses = []
        for sign in (1.0, -1.0):
            strained = eq.unit.copy()
            strained.set_cell(eq.unit.cell.array @ (np.eye(3) + strain_matrix(j, sign * strain)), scale_atoms=True)
            r = relax(strained, calc, fmax=IONS_FMAX)
            if r.failure:
                raise MLFFDError(f"relaxing the ions under strain {j + 1} failed: {r.failure}")
            converged &= r.converged
            stresses.append(r.stress)
        c[:, j] = (stresses[0] - stresses[1]) / (2.0 * strain)
    c = 0.5 * (c + c.T) / GPa
    out = {"C_GPa": c.tolist(), "relaxed": bool(converged), **voigt_reuss_hill(c)}
    if crystal.cubic:
        out["C11_GPa"] = float(np.mean(np.diag(c)[:3]))
        out["C12_GPa"] = float(np.mean([c[0, 1], c[0, 2], c[1, 2]]))
        out["C44_GPa"] = float(np.mean(np.diag(c)[3:]))
    return out


def voigt_reuss_hill(c: np.ndarray) -> dict:
    """Bulk and shear moduli: Voigt (uniform strain), Reuss (uniform stress) and their mean (Hill)."""
    bulk_v = (c[0, 0] + c[1, 1] + c[2, 2] + 2.0 * (c[0, 1] + c[0, 2] + c[1, 2])) / 9.0
    shear_v = ((c[0, 0] + c[1, 1] + c[2, 2]) - (c[0, 1] + c[0, 2] + c[1, 2])
               + 3.0 * (c[3, 3] + c[4, 4] + c[5, 5])) / 15.0
    try:
        s = np.linalg.inv(c)
        bulk_r = 1.0 / ((s[0, 0] + s[1, 1] + s[2, 2]) + 2.0 * (s[0, 1] + s[0, 2] + s[1, 2]))
        shear_r = 15.0 / (4.0 * (s[0, 0] + s[1, 1] + s[2, 2]) - 4.0 * (s[0, 1] + s[0, 2] + s[1, 2])
                          + 3.0 * (s[3, 3] + s[4, 4] + s[5, 5]))
    except np.linalg.LinAlgError:  # a singular tensor: the crystal is mechanically unstable
        bulk_r = shear_r = float("nan")
    return {
        "B_VRH_GPa": float(0.5 * (bulk_v + bulk_r)),
        "G_VRH_GPa": float(0.5 * (shear_v + shear_r)),
        "B_voigt_GPa": float(bulk_v), "B_reuss_GPa": float(bulk_r),
        "G_voigt_GPa": float(shear_v), "G_reuss_GPa": float(shear_r),
        "mechanically_stable": bool(np.all(np.linalg.eigvalsh(c) > 0)),
    }


def _eos_rows(result: dict) -> list[dict]:
    t, s = result["teacher"], result["student"]
    if "failure" in s:
        return [failed_row("EOS", "", None, s["failure"])]
    rows = [relative_row("a0", "A", t["a0_A"], s["a0_A"], "a0") if "a0_A" in t else
            relative_row("V0", "A^3/atom", t["v0_A3_per_atom"], s["v0_A3_per_atom"], "v0")]
    rows.append(relative_row("B (EOS)", "GPa", t["B_GPa"], s["B_GPa"], "B"))
    rows.append(relative_row("B'", "1", t["Bprime"], s["Bprime"], None))
    return rows


def _elastic_rows(result: dict) -> list[dict]:
    t, s = result["teacher"], result["student"]
    if "failure" in s:
        return [failed_row("elastic constants", "", None, s["failure"])]
    if "C11_GPa" in t:
        rows = [relative_row(k, "GPa", t[f"{k}_GPa"], s[f"{k}_GPa"], "Cij") for k in ("C11", "C12", "C44")]
    else:
        ct, cs = np.asarray(t["C_GPa"]), np.asarray(s["C_GPa"])
        rows = [relative_row(f"C{i + 1}{j + 1}", "GPa", float(ct[i, j]), float(cs[i, j]), "Cij")
                for i in range(6) for j in range(i, 6)
                if abs(ct[i, j]) >= 5.0]  # the independent, non-negligible constants
    rows.append(relative_row("B (VRH)", "GPa", t["B_VRH_GPa"], s["B_VRH_GPa"], "B"))
    rows.append(relative_row("G (VRH)", "GPa", t["G_VRH_GPa"], s["G_VRH_GPa"], "B"))
    return rows


EOS = Property("eos", lambda eq, calc, ctx: equation_of_state(eq, calc, ctx.crystal), _eos_rows)
ELASTIC = Property("elastic", lambda eq, calc, ctx: elastic_constants(eq, calc, ctx.crystal), _elastic_rows)
