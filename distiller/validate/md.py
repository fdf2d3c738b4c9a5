"""Short molecular dynamics for validation: Langevin then NVE, RDFs, drift and stability checks.

Units: time in fs (ASE internal time converted), energies in eV, distances in Angstrom,
temperatures in K. g(r) is dimensionless.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from ase import units
from ase.data import chemical_symbols, covalent_radii

LANGEVIN_FRICTION_PER_FS = 0.01  # 1/fs (a 100 fs velocity relaxation time)


def default_min_distance(symbols) -> float:
    """The shortest-pair floor of the stability check: 0.45 x the smallest sum of covalent radii
    (1.0 A for Si-Si, 1.19 A for Cu-Cu, 0.59 A for O-O)."""
    zs = sorted({chemical_symbols.index(s) for s in symbols})
    r = min(covalent_radii[z] for z in zs)
    return round(0.45 * 2.0 * float(r), 3)


def pair_distances(atoms, r_max: float) -> np.ndarray:
    """All pair distances below r_max (each pair once per direction), periodic images included."""
    from distiller.neighbours import NeighbourList

    pbc = np.asarray(atoms.pbc, dtype=bool)
    index, shift = NeighbourList(r_max).compute(atoms.positions, atoms.cell.array, pbc)
    if index.shape[1] == 0:
        return np.zeros(0)
    vec = atoms.positions[index[1]] - atoms.positions[index[0]] + shift
    return np.linalg.norm(vec, axis=1)


class RDF:
    """Total radial distribution function g(r) accumulated over frames (fixed bins)."""

    def __init__(self, r_max: float = 5.0, bin_width: float = 0.05):
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


@dataclass
class MDResult:
    """What one run recorded (time in fs)."""

    label: str
    steps_done: int = 0
    steps_requested: int = 0
    time_fs: list = field(default_factory=list)
    epot: list = field(default_factory=list)  # eV (total)
    ekin: list = field(default_factory=list)  # eV (total)
    temperature: list = field(default_factory=list)  # K
    phase: list = field(default_factory=list)  # "nvt" or "nve" per record
    min_distance: float = float("inf")
    max_temperature: float = 0.0
    stopped: str | None = None  # why the run stopped early (instability)
    wall_s: float = 0.0
    frames: list = field(default_factory=list)  # sampled Atoms (no calculator)


def initial_velocities(atoms, temperature: float, seed: int) -> None:
    """Maxwell-Boltzmann momenta at `temperature` from `seed`, centre-of-mass motion removed."""
    from ase.md import velocitydistribution as vd

    rng = np.random.default_rng(seed)
    if hasattr(vd, "thermalize_momenta"):  # ase >= 3.29
        vd.thermalize_momenta(atoms, temperature, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    vd.Stationary(atoms)


def run_md(atoms, calc, *, label: str, temperature: float, timestep_fs: float, seed: int,
           nvt_steps: int, nve_steps: int = 0, sample_every: int = 5, rdf: RDF | None = None,
           min_distance_floor: float = 1.0, max_temperature: float | None = None,
           log=None) -> MDResult:
    """Langevin (NVT) for `nvt_steps`, then velocity Verlet (NVE) for `nve_steps`.

    Energies and temperature are recorded every step; every `sample_every` steps the shortest pair
    distance is checked and, in the second half of the NVT part, the frame is added to `rdf`.
    The run stops early (`stopped` set) if a pair comes closer than `min_distance_floor`, the
    temperature passes `max_temperature`, a value is not finite, or the calculator refuses the
    structure (overlapping atoms)."""
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calc
    initial_velocities(atoms, temperature, seed)
    res = MDResult(label=label, steps_requested=nvt_steps + nve_steps)
    n = len(atoms)
    r_check = max(min_distance_floor, rdf.r_max if rdf is not None else 0.0) + 1e-9
    t0 = time.perf_counter()

    def record(phase: str, step: int) -> bool:
        epot = atoms.get_potential_energy()
        ekin = atoms.get_kinetic_energy()
        temp = ekin / (1.5 * units.kB * n)
        res.time_fs.append(step * timestep_fs)
        res.epot.append(float(epot))
        res.ekin.append(float(ekin))
        res.temperature.append(float(temp))
        res.phase.append(phase)
        res.max_temperature = max(res.max_temperature, float(temp))
        if not (np.isfinite(epot) and np.isfinite(ekin)):
            res.stopped = f"non-finite energy at step {step}"
            return False
        if max_temperature is not None and temp > max_temperature:
            res.stopped = f"temperature {temp:.0f} K above {max_temperature:.0f} K at step {step}"
            return False
        if step % sample_every == 0:
            d = pair_distances(atoms, r_check)
            if len(d):
                res.min_distance = min(res.min_distance, float(d.min()))
                if d.min() < min_distance_floor:
                    res.stopped = f"pair at {d.min():.3f} A (< {min_distance_floor} A) at step {step}"
                    return False
            if phase == "nvt" and rdf is not None and step > nvt_steps // 2:
                rdf.add(atoms, d[d < rdf.r_max])
            if phase == "nvt" and len(res.frames) < 200:
                frame = atoms.copy()
                frame.calc = None
                res.frames.append(frame)
        return True

    step = 0
    try:
        ok = record("nvt", 0)
        if nvt_steps and ok:
            from ase.constraints import FixCom

            atoms.set_constraint(FixCom())  # no centre-of-mass drift (ASE's fixcm=True is deprecated)
            dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, fixcm=False,
                           friction=LANGEVIN_FRICTION_PER_FS / units.fs, rng=np.random.default_rng(seed))
            for _ in range(nvt_steps):
                dyn.run(1)
                step += 1
                if not record("nvt", step):
                    break
                if log and step % max(1, nvt_steps // 4) == 0:
                    log(f"  {label} NVT step {step}/{nvt_steps}  T={res.temperature[-1]:.0f} K")
        if nve_steps and res.stopped is None:
            atoms.set_constraint()
            dyn = VelocityVerlet(atoms, timestep_fs * units.fs)
            for k in range(nve_steps):
                dyn.run(1)
                step += 1
                if not record("nve", step):
                    break
                if log and (k + 1) % max(1, nve_steps // 4) == 0:
                    log(f"  {label} NVE step {k + 1}/{nve_steps}  T={res.temperature[-1]:.0f} K")
    except Exception as exc:  # the calculator refused the structure: the model blew up
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        res.stopped = f"calculator failed at step {step + 1}: {first}"
    res.steps_done = step
    res.wall_s = time.perf_counter() - t0
    return res


def nve_drift(res: MDResult, n_atoms: int) -> dict:
    """Linear fit of total energy per atom against time over the NVE records."""
    idx = [k for k, p in enumerate(res.phase) if p == "nve"]
    if len(idx) < 3:
        return {"drift_ev_per_atom_per_ps": None, "abs_drift_ev_per_atom_per_ps": None,
                "energy_std_ev_per_atom": None, "duration_ps": 0.0, "steps": max(0, len(idx) - 1)}
    t_ps = np.array([res.time_fs[k] for k in idx]) / 1000.0
    etot = np.array([res.epot[k] + res.ekin[k] for k in idx]) / n_atoms
    slope, intercept = np.polyfit(t_ps - t_ps[0], etot, 1)
    return {
        "drift_ev_per_atom_per_ps": float(slope),
        "abs_drift_ev_per_atom_per_ps": float(abs(slope)),
        "energy_std_ev_per_atom": float(np.std(etot)),
        "energy_range_ev_per_atom": float(np.ptp(etot)),
        "duration_ps": float(t_ps[-1] - t_ps[0]),
        "steps": len(idx) - 1,
        "fit_intercept_ev_per_atom": float(intercept),
    }
