"""C11 of the teacher and a student as central differences of the stress at growing strain.

    python benchmarks/fidelity/c11_vs_strain.py lab/si/runs/energy300_relaxed_strain_e200-s0/model.pt

Diamond Si at the teacher's relaxed lattice constant (5.46255 A, 8-atom cell; under a normal strain
the ions of diamond do not relax, so the unrelaxed difference is C11): (sigma_xx(+h) - sigma_xx(-h))
/ 2h for h from 0.1 % to 3 %. `mlffd validate` takes h = 0.5 %; the clean elastic strains of the
training data span 0.2-3 %.
"""

from __future__ import annotations

import argparse

import numpy as np
from ase.build import bulk
from ase.units import GPa

from mlffd.calculator import MLFFDCalculator
from mlffd.teachers.registry import load_teacher

STRAINS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03)


def c11(calc, a0: float, h: float) -> float:
    base = bulk("Si", "diamond", a=a0, cubic=True)
    stress = []
    for sign in (1.0, -1.0):
        atoms = base.copy()
        atoms.set_cell(base.cell.array @ np.diag([1.0 + sign * h, 1.0, 1.0]), scale_atoms=True)
        atoms.calc = calc
        stress.append(atoms.get_stress()[0] / GPa)
    return (stress[0] - stress[1]) / (2.0 * h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--teacher", default="sevennet-0")
    ap.add_argument("--a0", type=float, default=5.46255)
    args = ap.parse_args()
    print("| model | " + " | ".join(f"h = {100 * h:g} %" for h in STRAINS) + " |")
    print("|---" * (len(STRAINS) + 1) + "|")
    for name, calc in [(args.teacher, load_teacher(args.teacher))] + [(m, MLFFDCalculator(m)) for m in args.models]:
        print(f"| {name} | " + " | ".join(f"{c11(calc, args.a0, h):.1f}" for h in STRAINS) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
