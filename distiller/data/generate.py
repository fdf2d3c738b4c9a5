"""`mlffd generate`: sample structures, label them with a teacher, append them to one HDF5 file.

Resumable: the plan of frame keys is deterministic, frames are committed one by one, and a
re-run skips committed keys (MD chains continue from their last stored frame).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mlffd.data.dataset import open_dataset
from mlffd.data.sampling import (
    MD_SAMPLERS,
    TO_RELAX,
    MDState,
    plan_recipes,
    sample_elastic,
    sample_interstitial,
    sample_md,
    sample_pair,
    sample_rattle,
    sample_strain,
    sample_vacancy,
    sample_volume,
    atoms_to_state,
)
from mlffd.data.systems import System, load_systems, validate_atoms, with_supercells
from mlffd.data.writer import DatasetWriter
from mlffd.errors import MLFFDError
from mlffd.neighbours import periodic_3d

ONE_SHOT_SAMPLERS = {"rattle": sample_rattle, "strain": sample_strain, "vacancy": sample_vacancy,
                     "volume": sample_volume, "elastic": sample_elastic, "interstitial": sample_interstitial}


def check_output_writable(out: Path) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists():
        if out.is_dir():
            raise MLFFDError(f"output path is a directory: {out}")
        if not os.access(out, os.W_OK):
            raise MLFFDError(f"output file is not writable: {out}")
    else:
        if not parent.is_dir():
            raise MLFFDError(f"output directory does not exist: {parent}")
        if not os.access(parent, os.W_OK):
            raise MLFFDError(f"output directory is not writable: {parent}")


RELAXED_SUFFIX = "@relaxed"
RELAX_FMAX = 0.005  # eV/A: well below the forces of the gentlest (30 K) rattle around the minimum


def teacher_relaxed(atoms, calc, where: str, cell: str, log=print):
    """`atoms` relaxed by the teacher (mlffd.relax.relax `cell` mode); refused with the teacher's
    reason when it fails, the last structure kept (and said) when it does not converge."""
    from mlffd.relax import relax

    result = relax(atoms, calc, fmax=RELAX_FMAX, cell=cell)
    if result.failure:
        raise MLFFDError(f"{where}: relaxing it with the teacher failed ({result.failure}); check the structure")
    if not result.converged:
        log(f"warning: {where}: the teacher's relaxation did not reach {RELAX_FMAX} eV/A in {result.steps} steps; "
            "keeping the last structure")
    return result.atoms


def relaxed_image(atoms, calc, where: str, log=print):
    """The centre of `relax=True` sampling: ions, and the cell too when periodic in x, y and z."""
    return teacher_relaxed(atoms, calc, where, "full" if periodic_3d(atoms) else "fixed", log)


def frame_plan(systems: list[str], frames: int, temperatures, seed: int = 0, md_fraction: float = 0.2,
               vacancy_fraction: float = 0.0, pair_fraction: float = 0.0, fractions: dict | None = None,
               relax: bool = False, supercell_width: float | None = None, log=print) -> tuple[list[System], list]:
    """The systems as sampled (supercells, relaxed-centre names) and the deterministic frame recipes of
    a `generate_dataset` call with these settings."""
    syss = load_systems(list(systems))
    if supercell_width is not None:
        chosen = [with_supercells(s, supercell_width) for s in syss]
        syss = [s for s, _ in chosen]
        for _, line in chosen:
            if line:
                log(line)
    if relax:  # own keys: a resumed file never mixes frames around two different centres
        syss = [System(f"{s.name}{RELAXED_SUFFIX}", s.images, s.source, s.from_file) for s in syss]
    plan = plan_recipes(syss, frames, list(temperatures), seed, md_fraction, vacancy_fraction, pair_fraction,
                        fractions)
    return syss, plan


# What labelling a frame costs in teacher calls: one label; an MD frame its Langevin steps (the first
# force call and one per step); a relaxed frame, and each relax=True centre, a relaxation. SevenNet-0's
# relaxations took 14-26 calls for a strained cell, 21-63 for a vacancy and 4-31 for a centre on Si,
# quartz and LiCoO2 (2026-12-07): counted at about their middle.
RELAXATION_CALLS = {"relaxed_strain": 20, "relaxed_vacancy": 40, "centre": 20}


def teacher_calls(out: str | os.PathLike, systems: list[str], frames: int, temperatures, seed: int = 0,
                  md_fraction: float = 0.2, md_stride: int = 10, vacancy_fraction: float = 0.0,
                  pair_fraction: float = 0.0, fractions: dict | None = None, relax: bool = False,
                  supercell_width: float | None = None) -> int:
    """About how many teacher calls `generate_dataset` with these settings makes to label the frames
    of its plan that `out` does not hold yet (0 when it holds them all)."""
    syss, plan = frame_plan(systems, frames, temperatures, seed, md_fraction, vacancy_fraction, pair_fraction,
                            fractions, relax, supercell_width, log=lambda *_: None)
    done = set(open_dataset(out).keys()) if Path(out).exists() else set()
    todo = [r for r in plan if r.key not in done]
    if not todo:
        return 0
    centres = RELAXATION_CALLS["centre"] * sum(len(s.images) for s in syss) if relax else 0
    return centres + sum(md_stride + 1 if r.sampler in MD_SAMPLERS else RELAXATION_CALLS.get(r.sampler, 1) for r in todo)


def generate_dataset(
    out: str | os.PathLike,
    teacher: str,
    systems: list[str],
    frames: int,
    temperatures: list[float] = (300.0, 900.0, 1500.0),
    seed: int = 0,
    md_fraction: float = 0.2,
    md_stride: int = 10,
    vacancy_fraction: float = 0.0,
    pair_fraction: float = 0.0,
    fractions: dict | None = None,
    relax: bool = False,
    supercell_width: float | None = None,
    device: str = "cpu",
    teacher_options: dict | None = None,
    calculator=None,
    progress: bool = True,
    log=print,
) -> dict:
    """Make sure `out` holds every frame of the plan; returns a small report dict.

    `calculator` may be an already loaded teacher (from `load_teacher(teacher)`) to save the load;
    `fractions` the shares of the volume, elastic and interstitial samplers (mlffd.data.sampling).
    `relax`: sample around each structure relaxed by the teacher (ions, and the cell when periodic in
    x, y and z) instead of around the structure as given, so that near-equilibrium frames sit at the
    teacher's own minimum; such frames are keyed `<system>@relaxed/...`.
    `supercell_width`: structures read from a file are repeated until every periodic width is at
    least this many A (give the student's cutoff; mlffd.data.systems.with_supercells); built-ins
    keep their own supercell; None: every structure as given.
    """
    from mlffd.teachers.registry import load_teacher, teacher_elements

    out = Path(out)
    if md_stride < 1:
        raise MLFFDError(f"md_stride must be at least 1, got {md_stride}")
    covered = teacher_elements(teacher)  # also rejects an unknown teacher name
    syss, plan = frame_plan(systems, frames, temperatures, seed, md_fraction, vacancy_fraction, pair_fraction,
                            fractions, relax, supercell_width, log)
    for s in syss:
        for i, a in enumerate(s.images):
            validate_atoms(a, f"system {s.source}" + (f" (structure {i})" if len(s.images) > 1 else ""),
                           covered, teacher)
    by_name = {s.name: s for s in syss}
    check_output_writable(out)

    # what is already there (a file left by a killed run is read in SWMR mode)
    done: set[str] = set()
    md_states: dict[str, MDState] = {}
    if out.exists():
        ds = open_dataset(out)
        have = ds.metadata["teacher_name"]
        if have != teacher:
            raise MLFFDError(f"{out} holds labels from teacher {have!r}, not {teacher!r}; use another output file")
        keys = ds.keys()
        done = set(keys)
        wanted_prev = {r.prev_key for r in plan if r.sampler in MD_SAMPLERS and r.key not in done and r.prev_key}
        index = {k: i for i, k in enumerate(keys)}
        for k in wanted_prev:
            if k in index:
                fr = ds.frame(index[k])
                if fr["velocities"] is None:
                    raise MLFFDError(f"{out}: MD frame {k} has no stored velocities; cannot continue it")
                md_states[k] = MDState(fr["numbers"], fr["positions"], fr["cell"], fr["pbc"], fr["velocities"])
    todo = [r for r in plan if r.key not in done]
    if not todo:
        log(f"nothing to do: all {len(plan)} frames of this plan are already in {out}")
        return {"planned": len(plan), "written": 0, "frames_in_file": len(done), "seconds": 0.0}

    if calculator is None:
        calc = load_teacher(teacher, device=device, **(teacher_options or {}))
    else:
        calc = calculator
        if getattr(calc, "teacher_name", teacher) != teacher:
            raise MLFFDError(f"calculator is teacher {calc.teacher_name!r}, not {teacher!r}")
    version = getattr(calc, "teacher_version", "unknown")
    if relax:
        for s in syss:
            s.images = [relaxed_image(a, calc, s.source, log) for a in s.images]

    written = 0
    t0 = time.perf_counter()
    bar = None
    with DatasetWriter(out, teacher, version) as writer:
        done = writer.keys()
        todo = [r for r in plan if r.key not in done]
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(plan), initial=len(plan) - len(todo), unit="frame",
                       desc=f"generate {teacher}", file=sys.stderr, dynamic_ncols=True)
        try:
            for r in todo:
                system = by_name[r.system]
                image = system.images[r.image]
                velocities = None
                if r.sampler in MD_SAMPLERS:
                    prev = None
                    if r.prev_key is not None:
                        prev = md_states.get(r.prev_key)
                        if prev is None:
                            raise MLFFDError(f"internal: MD frame {r.prev_key} missing before {r.key}")
                    atoms = sample_md(image, r, calc, prev, md_stride)
                elif r.sampler == "pair":
                    atoms = sample_pair(image, r, seed)
                    atoms.calc = calc
                elif r.sampler in TO_RELAX:
                    atoms = teacher_relaxed(TO_RELAX[r.sampler](image, r), calc, r.key, "fixed", log)
                    atoms.calc = calc
                else:
                    atoms = ONE_SHOT_SAMPLERS[r.sampler](image, r)
                    atoms.calc = calc
                # labels of the final positions (cached by the calculator after MD)
                atoms.get_potential_energy()
                atoms.get_forces()
                if periodic_3d(atoms):
                    atoms.get_stress()
                if r.sampler in MD_SAMPLERS:
                    state = atoms_to_state(atoms)
                    velocities = state.velocities
                    md_states[r.key] = state
                    md_states.pop(r.prev_key, None)
                writer.append(atoms, sampler=r.sampler, temperature=r.temperature, seed=r.seed,
                              key=r.key, velocities=velocities)
                written += 1
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        total = len(writer)
    seconds = time.perf_counter() - t0
    rate = written / seconds * 60.0 if seconds > 0 else float("nan")
    log(f"wrote {written} frames to {out} in {seconds:.1f} s ({rate:.1f} frames/min); "
        f"{total} frames in the file")
    return {"planned": len(plan), "written": written, "frames_in_file": total, "seconds": seconds,
            "frames_per_minute": rate}
