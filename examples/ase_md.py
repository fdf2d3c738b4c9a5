"""An ordinary ASE script: relax a rattled Si cell (atoms and cell), then Langevin NVT and NVE.

Written for the teacher; the distilled student runs it unchanged but for the calculator line:

    calc = SevenNetCalculator("7net-0", device="cpu")      # the teacher
    calc = MLFFDCalculator("model.pt")                     # the student

Usage: python examples/ase_md.py [model.pt]  (without an argument it uses the teacher, SevenNet-0)
"""

import sys

from ase import units
from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

if len(sys.argv) > 1:
    from mlffd import MLFFDCalculator

    calc = MLFFDCalculator(sys.argv[1])
else:
    from sevenn.calculator import SevenNetCalculator

    calc = SevenNetCalculator("7net-0", device="cpu")

atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
atoms.rattle(0.05, seed=0)
atoms.calc = calc

BFGS(FrechetCellFilter(atoms), logfile="-").run(fmax=0.05, steps=50)
print(f"relaxed: a = {atoms.cell.lengths()[0] / 2:.4f} A, E = {atoms.get_potential_energy() / len(atoms):.4f} eV/atom")

MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=__import__("numpy").random.default_rng(0))
Langevin(atoms, 1.0 * units.fs, temperature_K=600, friction=0.02, rng=__import__("numpy").random.default_rng(1)).run(100)

nve = VelocityVerlet(atoms, 1.0 * units.fs)
energies = []
nve.attach(lambda: energies.append(atoms.get_total_energy()), interval=10)
nve.run(200)
print(f"NVE: total energy {energies[0]:.5f} -> {energies[-1]:.5f} eV over {len(energies) * 10} fs, "
      f"T = {atoms.get_temperature():.0f} K")
