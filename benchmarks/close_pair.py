"""One pair of atoms pushed together inside the relaxed crystal: energy above the crystal, teacher
beside students (not a test). Where a student's wall is lower than the teacher's, hot MD can collapse.

    python benchmarks/close_pair.py --system cu MODEL.pt [MODEL.pt ...] [--teacher sevennet-0]

The crystal is validate's unit cell of the system (a built-in or a structure file) repeated to at least 10 A; atom 0's nearest neighbour is
moved along their bond to each distance. Prints a markdown table (eV above the unperturbed crystal).
"""

from __future__ import annotations

import argparse

import numpy as np

from mlffd.calculator import MLFFDCalculator
from mlffd.teachers import load_teacher
from mlffd.validate.properties.crystal import load_crystal, repeats_for_width

DISTANCES_A = (2.2, 2.0, 1.8, 1.6, 1.4, 1.2, 1.0)


def energy_at(crystal, calc, distance: float | None) -> float:
    atoms = crystal.copy()
    if distance is not None:
        d = atoms.get_distances(0, range(1, len(atoms)), mic=True, vector=True)
        j = 1 + int(np.argmin(np.linalg.norm(d, axis=1)))
        bond = d[j - 1] / np.linalg.norm(d[j - 1])
        atoms.positions[j] = atoms.positions[0] + bond * distance
    atoms.calc = calc
    return float(atoms.get_potential_energy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--system", default="cu")
    parser.add_argument("--teacher", default="sevennet-0")
    args = parser.parse_args()
    unit = load_crystal(args.system).unit
    crystal = unit.repeat(repeats_for_width(unit, 10.0))
    calcs = {f"teacher ({args.teacher})": load_teacher(args.teacher)}
    calcs.update({model: MLFFDCalculator(model) for model in args.models})
    print(f"{args.system}, {len(crystal)} atoms: energy above the crystal (eV) with one pair at d")
    print("| d (A) | " + " | ".join(calcs) + " |")
    print("|---|" + "---|" * len(calcs))
    reference = {name: energy_at(crystal, calc, None) for name, calc in calcs.items()}
    for distance in DISTANCES_A:
        row = [f"{energy_at(crystal, calc, distance) - reference[name]:+.2f}" for name, calc in calcs.items()]
        print(f"| {distance} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
