"""Seeded, reproducible structure samplers and the deterministic plan of frame "recipes".

A plan is a list of `Recipe`s derived only from (systems, frames, temperatures, seed, fractions).
Every recipe has a unique key such as ``si/rattle/T900/s0/i00012`` or ``si/md/T900/s0/k00003``
and its own RNG seed derived from (seed, key), so any frame can be (re)made on its own, except
MD frames, which continue the trajectory of the previous frame of their chain (stored positions
and velocities). A resumed run therefore produces exactly the frames an uninterrupted one would.

Samplers (teacher calls per frame):
- rattle  (1): Gaussian displacements, sigma = 0.1 A * sqrt(T / 1000 K), at most 0.3 A;
- strain  (1): random symmetric cell strain, |e_ij| <= 0.02 + 0.02 * min(T/1500 K, 1), atoms
               scaled with the cell, then a rattle of half the sigma above;
- vacancy (1): one random atom removed, then a rattle (optional, --vacancy-fraction);
- interstitial (1): one atom (a random element of the cell) added at the emptiest of 256 random
               points, then a rattle of half the sigma above (--interstitial-fraction);
- volume  (1): the cell scaled isotropically to +-10 % volume, then a rattle of half the sigma
               above: the equation of state (--volume-fraction);
- elastic (1): one Voigt strain component (cycling through the six), 0.2 % to 3 % normal or 5 %
               shear (log-uniform), no rattle: clean stress-strain and internal-strain labels (--elastic-fraction);
- relaxed_strain (10-100): one Voigt strain component as elastic or, every seventh frame, the
               volume changed by up to +-6 %, then the ions relaxed by the teacher in that cell:
               the relaxed-ion stress-strain and E(V) that the elastic constants and the equation
               of state measure (--relaxed-strain-fraction);
- relaxed_vacancy (10-100): one random atom removed, a 0.02 A rattle, then the ions relaxed by the
               teacher at fixed cell: the relaxed vacancy whose energy validate's E_vac measures, where
               a rattled unrelaxed vacancy leaves the student to guess the relaxation energy
               (--relaxed-vacancy-fraction);
- md      (md_stride): teacher-driven Langevin MD at T; one frame kept every md_stride steps;
- vacancy_md (md_stride): the same MD with one atom removed where the chain starts, one chain per
               element and temperature (keys ``si/vacancy_md/T2000/s0/Si/k00003``): a vacancy's hops,
               which one-shot vacancy rattles never reach (--vacancy-md-fraction);
- pair    (1 each): a rattled frame (key ...a) and its copy displaced by PAIR_STEP RMS per atom
               along a random direction (key ...b): the teacher's force difference is a
               finite-difference Hessian-vector product, which training can match (--pair-fraction).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units

from mlffd.data.systems import MIN_DISTANCE, System, min_distance
from mlffd.md import THERMOSTAT_FRICTION_PER_FS, md_timestep
from mlffd.neighbours import periodic_3d
from mlffd.errors import MLFFDError

SAMPLERS = ("rattle", "strain", "vacancy", "md", "pair", "volume", "elastic", "interstitial", "relaxed_strain",
            "relaxed_vacancy", "vacancy_md")
# Samplers whose share is given by `fractions` (the others have their own arguments).
EXTRA_SAMPLERS = ("volume", "elastic", "interstitial", "relaxed_strain", "relaxed_vacancy", "vacancy_md")
# Samplers whose frames are chains of teacher MD (each continues the previous frame of its chain).
MD_SAMPLERS = ("md", "vacancy_md")
VOLUME_SPAN = 0.10
ELASTIC_MAX = (0.03, 0.05)  # normal, shear
# Log-uniform from ELASTIC_MIN: half the strains below ~0.8 %, where validate's +-0.5 % differences
# take the tangent (uniform draws put most at 1.5-3 %, where the stress-strain curve already bends:
# a student fitting them to 2 % missed C11's tangent by 6 %)
ELASTIC_MIN = 0.002
RELAXED_VOLUME_SPAN = 0.06  # what validate's equation of state spans
PAIR_STEP = 0.01  # Angstrom, RMS displacement per atom between the two frames of a pair


def derive_seed(seed: int, key: str) -> int:
    """A 63-bit seed from the run seed and a frame key (stable across Python versions)."""
    digest = hashlib.sha256(f"{int(seed)}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class Recipe:
    key: str
    system: str
    sampler: str
    temperature: float
    seed: int  # this frame's own seed (derive_seed(run seed, key))
    index: int  # i for one-shot samplers, k (position in the chain) for md
    image: int  # which image of the system starts it
    prev_key: str | None = None  # md: the frame this one continues
    element: str | None = None  # vacancy_md: the element whose atom the chain's start lacks


def _fmt_t(t: float) -> str:
    return f"{t:g}"


def _image_of(system: System, n: int, element: str | None) -> int:
    """The n-th image, cycling through the system's images (those that hold `element`, when given)."""
    held = [i for i, a in enumerate(system.images) if element is None or element in a.get_chemical_symbols()]
    return held[n % len(held)]


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if g < n % parts else 0) for g in range(parts)]


def plan_recipes(
    systems: list[System],
    frames: int,
    temperatures: list[float],
    seed: int = 0,
    md_fraction: float = 0.2,
    vacancy_fraction: float = 0.0,
    pair_fraction: float = 0.0,
    fractions: dict | None = None,
) -> list[Recipe]:
    """The deterministic list of `frames` recipes for these settings; `fractions` gives the shares of
    the EXTRA_SAMPLERS (a plan without them is the same as before they existed)."""
    if frames < 1:
        raise MLFFDError(f"the plan needs at least 1 frame, got {frames}")
    if not systems:
        raise MLFFDError("no systems given")
    if not temperatures:
        raise MLFFDError("no temperatures given")
    for t in temperatures:
        if not np.isfinite(t) or t <= 0 or t > 10000:
            raise MLFFDError(f"temperature must be in (0, 10000] K, got {t}")
    if len(set(temperatures)) != len(temperatures):
        raise MLFFDError("temperatures must be distinct")
    fractions = dict(fractions or {})
    unknown = sorted(set(fractions) - set(EXTRA_SAMPLERS))
    if unknown:
        raise MLFFDError(f"unknown sampler(s) {', '.join(unknown)} (fractions are for {', '.join(EXTRA_SAMPLERS)})")
    shares = {"md": md_fraction, "vacancy": vacancy_fraction, "pair": pair_fraction, **fractions}
    for name, v in shares.items():
        if not 0.0 <= v <= 1.0:
            raise MLFFDError(f"{name} fraction must be between 0 and 1, got {v}")
    if sum(shares.values()) > 1.0 + 1e-9:
        raise MLFFDError(f"the sampler fractions ({', '.join(shares)}) must not add up to more than 1")

    n_md = int(round(frames * md_fraction))
    n_vac = min(int(round(frames * vacancy_fraction)), frames - n_md)
    n_pair = 2 * (min(int(round(frames * pair_fraction)), frames - n_md - n_vac) // 2)
    n_extra = {}
    for name in EXTRA_SAMPLERS:
        n_extra[name] = min(int(round(frames * fractions.get(name, 0.0))),
                            frames - n_md - n_vac - n_pair - sum(n_extra.values()))
    n_rest = frames - n_md - n_vac - n_pair - sum(n_extra.values())
    n_strain = n_rest // 2
    n_rattle = n_rest - n_strain
    groups = [(s, t, None) for s in systems for t in temperatures]
    # a vacancy's chains: one per element of each system and temperature
    vacancy_groups = [(s, t, e) for s in systems for t in temperatures
                      for e in sorted(set().union(*(a.get_chemical_symbols() for a in s.images)))]
    streams: list[list[Recipe]] = []
    one_shot = [("rattle", n_rattle), ("strain", n_strain), ("vacancy", n_vac), ("md", n_md)]
    for sampler, count in one_shot + [(name, n_extra[name]) for name in EXTRA_SAMPLERS]:
        chains = vacancy_groups if sampler == "vacancy_md" else groups
        for g, ((system, t, element), c) in enumerate(zip(chains, _split(count, len(chains)))):
            stream = []
            prev = None
            for i in range(c):
                tag = "k" if sampler in MD_SAMPLERS else "i"
                segment = f"{element}/" if element else ""  # vacancy_md: the chain's element
                key = f"{system.name}/{sampler}/T{_fmt_t(t)}/s{seed}/{segment}{tag}{i:05d}"
                image = _image_of(system, g if sampler in MD_SAMPLERS else i, element)
                stream.append(
                    Recipe(key, system.name, sampler, float(t), derive_seed(seed, key), i, image, prev, element)
                )
                if sampler in MD_SAMPLERS:
                    prev = key
            if stream:
                streams.append(stream)
    for g, ((system, t, _), c) in enumerate(zip(groups, _split(n_pair // 2, len(groups)))):
        stream = []
        for i in range(c):
            base = f"{system.name}/pair/T{_fmt_t(t)}/s{seed}/i{i:05d}"
            for half in "ab":  # consecutive, so a pair is only split by a kill, never by the plan
                stream.append(Recipe(base + half, system.name, "pair", float(t), derive_seed(seed, base + half),
                                     i, i % len(system.images)))
        if stream:
            streams.append(stream)
    # interleave the streams so that an interrupted run has a bit of everything
    plan: list[Recipe] = []
    pos = 0
    while len(plan) < frames:
        for stream in streams:
            if pos < len(stream):
                plan.append(stream[pos])
        pos += 1
    return plan


# ------------------------------------------------------------------------------------ samplers


def rattle_sigma(temperature: float) -> float:
    return min(0.1 * float(np.sqrt(temperature / 1000.0)), 0.3)


def strain_max(temperature: float) -> float:
    return 0.02 + 0.02 * min(temperature / 1500.0, 1.0)


def _rattled(atoms: Atoms, sigma: float, rng: np.random.Generator, where: str) -> Atoms:
    for _ in range(50):
        out = atoms.copy()
        out.positions = atoms.positions + rng.normal(0.0, sigma, size=(len(atoms), 3))
        if min_distance(out) >= MIN_DISTANCE:
            return out
    raise MLFFDError(f"{where}: could not rattle without atoms closer than {MIN_DISTANCE} A")


def sample_rattle(image: Atoms, recipe: Recipe) -> Atoms:
    rng = np.random.default_rng(recipe.seed)
    return _rattled(image, rattle_sigma(recipe.temperature), rng, recipe.key)


def sample_strain(image: Atoms, recipe: Recipe) -> Atoms:
    rng = np.random.default_rng(recipe.seed)
    if not periodic_3d(image):
        # no cell to strain: fall back to a rattle (recorded as sampler "strain" for the plan)
        return _rattled(image, rattle_sigma(recipe.temperature), rng, recipe.key)
    emax = strain_max(recipe.temperature)
    e = rng.uniform(-emax, emax, size=(3, 3))
    e = 0.5 * (e + e.T)
    atoms = image.copy()
    atoms.set_cell(image.cell[:] @ (np.eye(3) + e), scale_atoms=True)
    return _rattled(atoms, 0.5 * rattle_sigma(recipe.temperature), rng, recipe.key)


def sample_pair(image: Atoms, recipe: Recipe, run_seed: int) -> Atoms:
    """Frame `a` of a pair is a rattle; frame `b` is the same rattle moved by PAIR_STEP (RMS)."""
    base_key = recipe.key[:-1]
    atoms = _rattled(image, rattle_sigma(recipe.temperature), np.random.default_rng(derive_seed(run_seed, base_key)),
                     recipe.key)
    if recipe.key.endswith("b"):
        direction = np.random.default_rng(recipe.seed).normal(size=(len(atoms), 3))
        atoms.positions += PAIR_STEP * direction / np.sqrt(np.mean(np.sum(direction**2, axis=1)))
    return atoms


def sample_vacancy(image: Atoms, recipe: Recipe) -> Atoms:
    rng = np.random.default_rng(recipe.seed)
    atoms = image.copy()
    if len(atoms) > 2:
        del atoms[int(rng.integers(len(atoms)))]
    return _rattled(atoms, rattle_sigma(recipe.temperature), rng, recipe.key)


def sample_volume(image: Atoms, recipe: Recipe) -> Atoms:
    rng = np.random.default_rng(recipe.seed)
    if not periodic_3d(image):
        raise MLFFDError(f"{recipe.key}: volume frames need a cell periodic in x, y and z")
    atoms = image.copy()
    scale = (1.0 + rng.uniform(-VOLUME_SPAN, VOLUME_SPAN)) ** (1.0 / 3.0)
    atoms.set_cell(image.cell[:] * scale, scale_atoms=True)
    return _rattled(atoms, 0.5 * rattle_sigma(recipe.temperature), rng, recipe.key)


def _voigt_strained(image: Atoms, component: int, rng: np.random.Generator) -> Atoms:
    """`image` under one Voigt strain component (0-5), ELASTIC_MIN to ELASTIC_MAX (log-uniform), atoms
    scaled with the cell."""
    span = np.log([ELASTIC_MIN, ELASTIC_MAX[component >= 3]])
    magnitude = np.exp(rng.uniform(*span)) * rng.choice([-1.0, 1.0])
    eps = np.zeros((3, 3))
    if component < 3:
        eps[component, component] = magnitude
    else:
        a, b = ((1, 2), (0, 2), (0, 1))[component - 3]
        eps[a, b] = eps[b, a] = magnitude / 2.0  # engineering shear strain
    atoms = image.copy()
    atoms.set_cell(image.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    return atoms


def sample_elastic(image: Atoms, recipe: Recipe) -> Atoms:
    rng = np.random.default_rng(recipe.seed)
    if not periodic_3d(image):
        raise MLFFDError(f"{recipe.key}: elastic frames need a cell periodic in x, y and z")
    return _voigt_strained(image, recipe.index % 6, rng)


def strained_to_relax(image: Atoms, recipe: Recipe) -> Atoms:
    """The start of a relaxed_strain frame: a Voigt strain component (cycling through the six) or,
    every seventh frame, a volume change, with a 0.01 A rattle so that the teacher's relaxation
    (mlffd.data.generate) is not held on a symmetric saddle."""
    rng = np.random.default_rng(recipe.seed)
    if not periodic_3d(image):
        raise MLFFDError(f"{recipe.key}: relaxed_strain frames need a cell periodic in x, y and z")
    component = recipe.index % 7
    if component < 6:
        atoms = _voigt_strained(image, component, rng)
    else:
        atoms = image.copy()
        scale = (1.0 + rng.uniform(-RELAXED_VOLUME_SPAN, RELAXED_VOLUME_SPAN)) ** (1.0 / 3.0)
        atoms.set_cell(image.cell[:] * scale, scale_atoms=True)
    return _rattled(atoms, 0.01, rng, recipe.key)


def vacancy_to_relax(image: Atoms, recipe: Recipe) -> Atoms:
    """The start of a relaxed_vacancy frame: one seeded random atom removed and a 0.02 A rattle, so
    that the teacher's relaxation can leave the symmetric saddle (as validate's vacancy does)."""
    rng = np.random.default_rng(recipe.seed)
    if len(image) < 3:
        raise MLFFDError(f"{recipe.key}: a vacancy needs a cell of at least 3 atoms, this one has {len(image)}")
    atoms = image.copy()
    del atoms[int(rng.integers(len(atoms)))]
    return _rattled(atoms, 0.02, rng, recipe.key)


# Samplers whose frame is a start that the teacher then relaxes at fixed cell.
TO_RELAX = {"relaxed_strain": strained_to_relax, "relaxed_vacancy": vacancy_to_relax}


def sample_interstitial(image: Atoms, recipe: Recipe) -> Atoms:
    from ase.geometry import get_distances

    rng = np.random.default_rng(recipe.seed)
    candidates = rng.uniform(size=(256, 3)) @ image.cell[:]
    _, d = get_distances(candidates, image.positions, cell=image.cell, pbc=image.pbc)
    site = candidates[int(np.argmax(d.min(axis=1)))]
    atoms = image.copy()
    atoms.append(int(rng.choice(np.unique(image.numbers))))
    atoms.positions[-1] = site
    return _rattled(atoms, 0.5 * rattle_sigma(recipe.temperature), rng, recipe.key)


@dataclass
class MDState:
    """What an MD frame leaves for the next one: exactly what is stored in the dataset."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    velocities: np.ndarray  # Angstrom/fs


def state_to_atoms(state: MDState) -> Atoms:
    atoms = Atoms(numbers=state.numbers, positions=state.positions, cell=state.cell, pbc=state.pbc)
    atoms.set_velocities(np.asarray(state.velocities) / units.fs)
    return atoms


def atoms_to_state(atoms: Atoms) -> MDState:
    return MDState(
        numbers=np.array(atoms.numbers),
        positions=np.array(atoms.positions, dtype=np.float64),
        cell=np.array(atoms.cell[:], dtype=np.float64),
        pbc=np.array(atoms.pbc, dtype=bool),
        velocities=np.array(atoms.get_velocities() * units.fs, dtype=np.float64),
    )


def sample_md(image: Atoms, recipe: Recipe, calc, prev: MDState | None, md_stride: int) -> Atoms:
    """Run md_stride Langevin steps from `prev` (or from the image with Maxwell-Boltzmann
    velocities for the first frame of a chain, less one seeded atom of `recipe.element` for
    vacancy_md); returns the final atoms with the teacher's labels of the final positions in
    `atoms.calc.results`."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    rng = np.random.default_rng(recipe.seed)
    if prev is None:
        atoms = Atoms(numbers=image.numbers, positions=image.positions, cell=image.cell, pbc=image.pbc)
        if recipe.sampler == "vacancy_md":
            if len(atoms) < 3:
                raise MLFFDError(f"{recipe.key}: a vacancy needs a cell of at least 3 atoms, this one has {len(atoms)}")
            of_element = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == recipe.element)
            del atoms[int(rng.choice(of_element))]
        MaxwellBoltzmannDistribution(atoms, temperature_K=recipe.temperature, rng=rng)
        Stationary(atoms)
        # go through the stored representation so every segment starts the same way
        atoms = state_to_atoms(atoms_to_state(atoms))
    else:
        atoms = state_to_atoms(prev)
    atoms.calc = calc
    dt = md_timestep(atoms)
    dyn = Langevin(
        atoms,
        timestep=dt * units.fs,
        temperature_K=recipe.temperature,
        friction=THERMOSTAT_FRICTION_PER_FS / units.fs,
        fixcm=False,
        rng=rng,
    )
    dyn.run(md_stride)
    if min_distance(atoms) < MIN_DISTANCE:
        raise MLFFDError(
            f"{recipe.key}: MD brought atoms closer than {MIN_DISTANCE} A; lower the temperature"
        )
    return atoms
