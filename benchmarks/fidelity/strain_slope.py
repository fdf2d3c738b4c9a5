"""Does a lab student miss C11 on its training strains, or only at the small strains validate uses?

    python benchmarks/fidelity/strain_slope.py --dir lab/si energy300_relaxed_strain-s0 energy300_relaxed_strain_e200-s0

For each kept model (runs/<name>/model.pt) and the pool's clean normal strains around the teacher's
relaxed crystal (`relaxed/elastic`, one normal Voigt component, no rattle): the least-squares slope
of the teacher's normal stress against the strain (the secant C11 over the frames' span), and the
slope of the student's stress error against it, relative to the teacher's. Validate's C11 is a
central difference at +-0.5 %, the tangent; a student can match the secant over +-3 % and still
miss the tangent when its stress-strain curve bends less than the teacher's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import GPa

from mlffd.calculator import MLFFDCalculator
from mlffd.data.dataset import open_dataset


def normal_strains(pool, temperature: float | None):
    """(frame, Voigt component, strain) of the clean one-component normal strains around the relaxed crystal."""
    frames = [f for f in pool.frames() if f["sampler"] == "elastic" and "@relaxed/" in f["key"]
              and (temperature is None or f["temperature"] == temperature)]
    # the relaxed cubic cell: most diagonal entries of one-component strains are unstrained edges
    reference = np.eye(3) * np.median([np.diag(f["cell"]) for f in frames])
    out = []
    for f in frames:
        eps = np.linalg.solve(reference, f["cell"]) - np.eye(3)
        diagonal = np.diag(eps)
        if np.abs(eps - np.diag(diagonal)).max() < 1e-8 and np.count_nonzero(np.abs(diagonal) > 1e-6) == 1:
            k = int(np.argmax(np.abs(diagonal)))
            out.append((f, k, diagonal[k]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="the lab folder (pool.h5, runs/)")
    ap.add_argument("--temperature", type=float, default=None, help="only the pool part with this temperature tag")
    ap.add_argument("runs", nargs="+", help="runs/<name> folders with a kept model.pt")
    args = ap.parse_args()
    strains = normal_strains(open_dataset(args.dir / "pool.h5"), args.temperature)
    eps = np.array([e for _, _, e in strains])
    teacher = np.array([f["stress"][k] for f, k, _ in strains]) / GPa  # ASE: (1/V) dE/d(strain)
    design = np.vstack([eps, np.ones_like(eps)]).T
    secant = np.linalg.lstsq(design, teacher, rcond=None)[0][0]
    print(f"{len(eps)} normal strains from {eps.min():+.4f} to {eps.max():+.4f} (median |strain| "
          f"{np.median(np.abs(eps)):.4f}); teacher's secant slope {secant:.1f} GPa")
    for run in args.runs:
        calc = MLFFDCalculator(str(args.dir / "runs" / run / "model.pt"))
        student = []
        for f, k, _ in strains:
            atoms = Atoms(numbers=f["numbers"], positions=f["positions"], cell=f["cell"], pbc=True)
            atoms.calc = calc
            student.append(atoms.get_stress()[k] / GPa)
        error = np.linalg.lstsq(design, np.array(student) - teacher, rcond=None)[0][0]
        print(f"{run}: student's secant slope {100 * error / secant:+.1f} % of the teacher's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
