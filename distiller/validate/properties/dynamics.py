"""Molecular dynamics with one protocol for student and teacher: structure, diffusion, stability.

From the model's own relaxed supercell: Maxwell-Boltzmann velocities at 2T (seeded), Langevin
equilibration (friction 0.02 1/fs), then Langevin production with a weak friction (0.001 1/fs, so
the dynamics is nearly Newtonian for the MSD), frames sampled every `sample_every` steps. The
student then runs on in NVE (its energy drift, and stability over a longer time than the
teacher can afford). Both models draw the same random numbers.

Units: time fs (reported ps), energies eV, distances A, temperatures K, D in A^2/ps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from ase import units
from ase.data import chemical_symbols

from mlffd.errors import MLFFDError
from mlffd.md import THERMOSTAT_FRICTION_PER_FS, initial_velocities
from mlffd.validate.properties.crystal import pair_distances

PRODUCTION_FRICTION_PER_FS = 0.001
RUNAWAY_FACTOR = 2.0  # unstable: hotter than this x the hottest of (target, teacher's run)
DIFFUSIVE_MSD_A2 = 1.0  # MSD at the longest lag above this: atoms leave their sites


class RDF:
    """Total radial distribution function g(r) accumulated over frames (fixed bins)."""

    def __init__(self, r_max: float = 6.0, bin_width: float = 0.1):
        self.r_max = float(r_max)
        self.bin_width = float(bin_width)
        self.edges = np.arange(0.0, self.r_max + 0.5 * self.bin_width, self.bin_width)
        self.counts = np.zeros(len(self.edges) - 1)
        self.frames = 0
        self._norm = 0.0

    @property
    def r(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def add(self, atoms, distances: np.ndarray | None = None) -> None:
        d = pair_distances(atoms, self.r_max) if distances is None else distances
        hist, _ = np.histogram(d, bins=self.edges)
        n = len(atoms)
        volume = atoms.get_volume() if np.all(atoms.pbc) else 1.0
        self.counts += hist
        self._norm += n * n / volume  # N * rho
        self.frames += 1

    def g(self) -> np.ndarray:
        if not self.frames:
            return np.zeros_like(self.counts)
        shell = 4.0 / 3.0 * np.pi * (self.edges[1:] ** 3 - self.edges[:-1] ** 3)
        return self.counts / (shell * self._norm)


def rdf_deviation(g_student: np.ndarray, g_teacher: np.ndarray) -> float:
    """Integrated |g_s - g_t| relative to the integral of g_t (1 = 100 %)."""
    total = float(np.sum(g_teacher))
    return float(np.sum(np.abs(g_student - g_teacher)) / total) if total > 0 else float("nan")


@dataclass
class Protocol:
    temperature: float  # K
    timestep_fs: float
    equilibration_steps: int
    production_steps: int
    nve_steps: int = 0  # after production (the student only)
    sample_every: int = 5
    seed: int = 0
    min_distance: float = 1.0  # A: a closer pair means the structure collapsed
    max_temperature: float | None = None  # K: hotter means a runaway


@dataclass
class Trajectory:
    """What one run recorded. Per step: time (fs), energies (eV, total), temperature (K), phase.
    Per production sample: positions (unwrapped), and the model's own labels when asked."""

    label: str
    time_fs: list = field(default_factory=list)
    epot: list = field(default_factory=list)
    ekin: list = field(default_factory=list)
    temperature: list = field(default_factory=list)
    phase: list = field(default_factory=list)
    positions: list = field(default_factory=list)  # production samples
    energies: list = field(default_factory=list)  # labels of the samples (eV)
    forces: list = field(default_factory=list)  # labels of the samples (eV/A)
    stopped: str | None = None  # why the run stopped early
    steps_done: int = 0
    wall_s: float = 0.0


def run_protocol(start, calc, protocol: Protocol, *, label: str, keep_labels: bool = False,
                 progress: bool = False) -> Trajectory:
    """Run the protocol from `start` (not modified); stops at the first stability failure: a
    non-finite energy, a pair closer than `min_distance`, a temperature above `max_temperature`,
    or a structure the calculator refuses."""
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet

    atoms = start.copy()
    atoms.calc = calc
    # a crystal started at its minimum shares kinetic with potential energy: drawn at 2T, it sits
    # at T within one vibration period, and the equilibration is spent equilibrating
    initial_velocities(atoms, 2.0 * protocol.temperature, protocol.seed)
    atoms.set_constraint(FixCom())  # no centre-of-mass drift (ASE's fixcm=True is deprecated)
    traj = Trajectory(label=label)
    n = len(atoms)
    rng = np.random.default_rng(protocol.seed + 1)
    dt = protocol.timestep_fs * units.fs
    phases = [("equilibration", protocol.equilibration_steps, THERMOSTAT_FRICTION_PER_FS),
              ("production", protocol.production_steps, PRODUCTION_FRICTION_PER_FS),
              ("nve", protocol.nve_steps, None)]
    total = sum(p[1] for p in phases)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"  {label} MD {protocol.temperature:g} K", unit="step", leave=False,
                   dynamic_ncols=True, mininterval=2.0)
    t0 = time.perf_counter()
    step = 0

    def record(phase: str) -> bool:
        epot, ekin = float(atoms.get_potential_energy()), float(atoms.get_kinetic_energy())
        temp = ekin / (1.5 * units.kB * n)
        traj.time_fs.append(step * protocol.timestep_fs)
        traj.epot.append(epot)
        traj.ekin.append(ekin)
        traj.temperature.append(temp)
        traj.phase.append(phase)
        if not (np.isfinite(epot) and np.isfinite(ekin)):
            traj.stopped = f"non-finite energy at step {step}"
            return False
        if protocol.max_temperature is not None and temp > protocol.max_temperature:
            traj.stopped = f"temperature {temp:.0f} K above {protocol.max_temperature:.0f} K at step {step}"
            return False
        if step % protocol.sample_every == 0:
            close = pair_distances(atoms, protocol.min_distance)
            if len(close):
                traj.stopped = f"pair at {close.min():.3f} A (< {protocol.min_distance} A) at step {step}"
                return False
            if phase == "production":
                traj.positions.append(atoms.get_positions())
                if keep_labels:
                    traj.energies.append(epot)
                    traj.forces.append(np.array(atoms.get_forces()))
        return True

    try:
        if record("equilibration"):
            for phase, steps, friction in phases:
                if not steps:
                    continue
                if friction is None:
                    atoms.set_constraint()
                    dyn = VelocityVerlet(atoms, dt)
                else:
                    dyn = Langevin(atoms, dt, temperature_K=protocol.temperature, friction=friction / units.fs,
                                   fixcm=False, rng=rng)
                stop = False
                for _ in range(steps):
                    dyn.run(1)
                    step += 1
                    if bar is not None:
                        bar.update(1)
                    if not record(phase):
                        stop = True
                        break
                if stop:
                    break
    except MLFFDError as exc:  # the calculator refused the structure: the model blew up
        traj.stopped = f"calculator refused the structure at step {step}: {exc}"
    finally:
        if bar is not None:
            bar.close()
    traj.steps_done = step
    traj.wall_s = time.perf_counter() - t0
    return traj


def phase_mean(traj: Trajectory, values: list, phase: str) -> float | None:
    picked = [v for v, p in zip(values, traj.phase) if p == phase]
    return float(np.mean(picked)) if picked else None


def nve_drift(traj: Trajectory, n_atoms: int) -> dict:
    """Linear fit of total energy per atom against time over the NVE records (eV/atom/ps)."""
    idx = [k for k, p in enumerate(traj.phase) if p == "nve"]
    if len(idx) < 3:
        return {"drift_ev_per_atom_per_ps": None, "duration_ps": 0.0, "steps": max(0, len(idx) - 1)}
    t_ps = np.array([traj.time_fs[k] for k in idx]) / 1000.0
    etot = np.array([traj.epot[k] + traj.ekin[k] for k in idx]) / n_atoms
    slope, _ = np.polyfit(t_ps - t_ps[0], etot, 1)
    return {"drift_ev_per_atom_per_ps": float(slope), "energy_std_ev_per_atom": float(np.std(etot)),
            "duration_ps": float(t_ps[-1] - t_ps[0]), "steps": len(idx) - 1}


def mean_squared_displacement(positions: list, numbers: np.ndarray, sample_fs: float) -> dict:
    """MSD per element against lag (all time origins, lags up to half the run), and the diffusion
    coefficient D = slope / 6 fitted over the second half of those lags."""
    if len(positions) < 8:
        return {}
    x = np.asarray(positions)  # [frame, atom, 3], unwrapped (ASE's MD never wraps)
    x = x - x.mean(axis=1, keepdims=True)  # no centre-of-mass drift
    lags = np.arange(len(x) // 2 + 1)
    out = {"lag_ps": (lags * sample_fs / 1000.0).tolist(), "per_element": {}}
    for z in sorted(set(numbers)):
        sel = x[:, numbers == z]
        msd = np.array([np.mean(np.sum((sel[lag:] - sel[: len(sel) - lag]) ** 2, axis=-1)) for lag in lags])
        fit = lags >= lags[-1] // 2
        slope = np.polyfit(lags[fit] * sample_fs / 1000.0, msd[fit], 1)[0]
        out["per_element"][chemical_symbols[z]] = {
            "msd_A2": msd.tolist(), "D_A2_per_ps": float(slope / 6.0),
            "diffusive": bool(msd[-1] > DIFFUSIVE_MSD_A2),
        }
    return out
