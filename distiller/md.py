"""The molecular-dynamics settings every stage shares: the data engine's teacher MD, validate's
student-and-teacher protocol, active learning's student MD and the speed benchmark all take their
timestep, thermostat friction and starting velocities from here.

Units: fs, K; ASE's internal units are applied by the caller (`dt * ase.units.fs`).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

THERMOSTAT_FRICTION_PER_FS = 0.02  # Langevin friction: a 50 fs velocity relaxation time


def md_timestep(atoms: Atoms) -> float:
    """Timestep in fs: 0.5 with H, 1.0 with other first/second-row elements, else 2.0."""
    z = atoms.numbers
    if np.any(z == 1):
        return 0.5
    if np.any(z <= 10):
        return 1.0
    return 2.0


def initial_velocities(atoms: Atoms, temperature: float, seed: int) -> None:
    """Maxwell-Boltzmann momenta at `temperature` from `seed`, centre-of-mass motion removed."""
    from ase.md import velocitydistribution as vd

    rng = np.random.default_rng(seed)
    if hasattr(vd, "thermalize_momenta"):  # ase >= 3.29
        vd.thermalize_momenta(atoms, temperature, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    vd.Stationary(atoms)
