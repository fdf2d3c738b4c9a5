"""Active learning: the student is cheap, the teacher is not.

    report = active_learning("data.h5", "sevennet-0", ["si"], "al/", ActiveSettings(rounds=3))

Each round:
1. train a committee of students on the data set (different seeds; from round 2 on, each member
   warm-starts from its own weights of the round before); with `score="uncertainty"` one student,
   and round 0 may take the user's own exported student (`model`) instead of training one;
2. candidates: student MD (ASE, member 0) at every temperature of the ladder from each system's
   crystal and from the same crystal with a vacancy, keeping a frame every `sample_every` steps (a
   run that breaks down keeps what it had: the frames before a blow-up are the ones to learn); or
   the frames of `trajectories` (production MD: a LAMMPS dump with an element column, an ASE
   trajectory, extxyz), every `sample_every`-th;
3. score each candidate: by the committee's disagreement, the largest per-atom standard deviation
   of the members' forces (eV/A); or by the student's own uncertainty (docs/artifact.md), its
   largest per-atom value;
4. label the highest-scoring candidates with the teacher (at most `frames_per_round`, at least
   `min_separation` samples apart in one trajectory, only above the stop threshold: `stop_std`, or
   `stop_uncertainty`, by default the largest uncertainty of the student's own training atoms) and
   append them to the data set as sampler `active`;
stop when no candidate scores above the threshold, or after `rounds` rounds.

Every frame's provenance (round, trajectory, step, score) is in `provenance.json`; `state.json`
records finished rounds. Everything is seeded and the trainer resumes bit for bit, so a run killed
anywhere (kill -9) and started again makes the same selection and never labels a frame twice (the
data set refuses a key it already holds).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from ase import Atoms, units
from ase.io import read
from ase.md.langevin import Langevin

from mlffd.calculator import MLFFDCalculator
from mlffd.data.dataset import open_dataset
from mlffd.data.sampling import derive_seed
from mlffd.data.systems import load_systems
from mlffd.data.writer import DatasetWriter
from mlffd.errors import MLFFDError
from mlffd.export.contract import read_metadata
from mlffd.flags import comma_separated
from mlffd.md import THERMOSTAT_FRICTION_PER_FS, initial_velocities, md_timestep
from mlffd.teachers.registry import load_teacher
from mlffd.training.config import TrainConfig
from mlffd.training.trainer import Trainer

SAMPLER = "active"
SCORES = ("committee", "uncertainty")


@dataclass
class ActiveSettings:
    rounds: int = 3
    committee: int = 3
    temperatures: list = field(default_factory=lambda: [300.0, 900.0, 1500.0])
    md_steps: int = 300  # per trajectory
    sample_every: int = 10  # MD steps between candidates
    frames_per_round: int = 24
    min_separation: int = 3  # candidates (of one trajectory) between two picks
    stop_std: float = 0.05  # eV/A: a committee this close everywhere needs no more data
    vacancy_starts: bool = True  # explore from a crystal with a vacancy too
    seed: int = 0
    score: str = "committee"  # or "uncertainty": one student's own per-atom uncertainty
    stop_uncertainty: Optional[float] = None  # None: the largest of the student's training atoms
    trajectories: list = field(default_factory=list)  # candidate frames from these files, not student MD
    model: Optional[str] = None  # round 0's student (an exported .pt) instead of training one

    def check(self) -> "ActiveSettings":
        if self.score not in SCORES:
            raise MLFFDError(f"active learning: score must be one of {', '.join(SCORES)}, not {self.score!r}")
        committee = self.score == "committee"
        for name in ("rounds", "committee", "md_steps", "sample_every", "frames_per_round"):
            least = 2 if name == "committee" and committee else 1
            if int(getattr(self, name)) < least:
                raise MLFFDError(f"active learning: {name} must be at least {least}")
        if not self.temperatures or min(self.temperatures) <= 0:
            raise MLFFDError("active learning: give positive MD temperatures")
        if self.model is not None and committee:
            raise MLFFDError("active learning: a given student (model) scores by its uncertainty; "
                             "add score='uncertainty' (--score uncertainty)")
        if self.model is not None and not Path(self.model).is_file():
            raise MLFFDError(f"active learning: no exported student at {self.model}")
        if self.stop_uncertainty is not None and not self.stop_uncertainty > 0:
            raise MLFFDError(f"active learning: stop_uncertainty must be > 0, got {self.stop_uncertainty!r}")
        for path in self.trajectories:
            if not Path(path).is_file():
                raise MLFFDError(f"active learning: no trajectory at {path}")
        return self

    @property
    def students(self) -> int:
        return self.committee if self.score == "committee" else 1


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def train_committee(data: Path, out: Path, round_index: int, settings: ActiveSettings, train_config,
                    quiet: bool = True) -> list[Path]:
    """Train (or resume) the members of one round; returns their exported .pt files (float64)."""
    # the fused export's module costs ~2 s to import: when a round exports, not at CLI start
    from mlffd.export.freeze import export_checkpoint

    if round_index == 0 and settings.model is not None:
        return [Path(settings.model)]
    models = []
    for k in range(settings.students):
        run = out / f"round{round_index:02d}" / f"member{k}"
        model = run.parent / f"member{k}.pt"
        if not model.exists():  # exported last: a member with a .pt is finished (the data has grown since)
            previous = out / f"round{round_index - 1:02d}" / f"member{k}"
            # each member warm-starts from its own run of the round before, else from the config's init_from
            config = TrainConfig.from_dict({**train_config.to_dict(), "seed": settings.seed + k,
                                            "init_from": str(previous) if previous.is_dir() else train_config.init_from})
            Trainer(str(data), str(run), config).run(quiet=quiet)
            export_checkpoint(run, model, dtype="float64", use_ops=False)
        models.append(model)
    return models


@dataclass
class Candidate:
    start: str
    temperature: float
    step: int
    atoms: object  # ase.Atoms, no calculator
    score: float = 0.0


def _starts(systems, settings: ActiveSettings) -> list[tuple[str, object]]:
    out = []
    for system in systems:
        for i, atoms in enumerate(system.images):  # every structure of a file starts its own MD
            name = system.name if len(system.images) == 1 else f"{system.name}_{i}"  # as FILE@N names it
            out.append((name, atoms))
            if settings.vacancy_starts and len(atoms) > 2:
                vac = atoms.copy()
                del vac[0]
                out.append((f"{name}-vac", vac))
    return out


def explore(model: Path, starts, settings: ActiveSettings, round_index: int, log=print) -> list[Candidate]:
    """Student MD from every start at every temperature; candidates every `sample_every` steps."""

    calc = MLFFDCalculator(str(model))
    candidates = []
    for name, start in starts:
        for temperature in settings.temperatures:
            seed = derive_seed(settings.seed, f"active/r{round_index}/{name}/T{temperature:g}")
            atoms = start.copy()
            atoms.calc = calc
            initial_velocities(atoms, temperature, seed)
            dyn = Langevin(atoms, md_timestep(atoms) * units.fs, temperature_K=temperature,
                           friction=THERMOSTAT_FRICTION_PER_FS / units.fs,
                           fixcm=False, rng=np.random.default_rng(seed))
            for step in range(settings.sample_every, settings.md_steps + 1, settings.sample_every):
                try:
                    dyn.run(settings.sample_every)
                    if not np.isfinite(atoms.get_potential_energy()):
                        break
                except MLFFDError:  # the student drove atoms onto each other: stop here
                    break
                frame = atoms.copy()
                frame.calc = None
                candidates.append(Candidate(name, temperature, step, frame))
    log(f"active: round {round_index}: {len(candidates)} candidate frames from {len(starts)} starts x "
        f"{len(settings.temperatures)} temperatures")
    return candidates


def read_trajectories(paths: list, elements: list[str], every: int) -> list[Candidate]:
    """Every `every`-th frame of each file (ase.io.read's formats; a LAMMPS dump needs an element
    column, `dump_modify ID element Si O`), as candidates without velocities or labels."""
    candidates = []
    for path in paths:
        try:
            frames = read(path, index=f"::{every}")
        except Exception as exc:  # ase raises what its readers raise
            raise MLFFDError(f"cannot read {path} as a trajectory: {exc}") from None
        for i, frame in enumerate(frames):
            unknown = sorted(set(frame.get_chemical_symbols()) - set(elements))
            if unknown:
                raise MLFFDError(f"{path}: frame {i * every} holds {', '.join(unknown)}, not among the student's "
                                 f"elements ({', '.join(elements)}); a LAMMPS dump needs its element column "
                                 "(dump_modify ID element ...)")
            atoms = Atoms(frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
            candidates.append(Candidate(Path(path).stem, 0.0, i * every, atoms))
    return candidates


def uncertainty_scores(model: Path, candidates: list[Candidate]) -> float:
    """Sets each candidate's score, the student's largest per-atom uncertainty (inf where it
    refuses the frame); returns the largest of its own training atoms (the default threshold)."""
    calc = MLFFDCalculator(str(model))
    if not calc.metadata.get("uncertainty"):
        raise MLFFDError(f"{model} carries no uncertainty (re-export it with mlffd export from its run folder); "
                         "score by a committee instead")
    for c in candidates:
        atoms = c.atoms.copy()
        atoms.calc = calc
        try:
            atoms.get_potential_energy()
            c.score = float(calc.results["uncertainty"])
        except MLFFDError:
            c.score = float("inf")
    return float(calc.metadata["uncertainty"]["train_quantiles"]["max"])


def committee_std(models: list[Path], candidates: list[Candidate]) -> None:
    """Sets each candidate's score: max over atoms of the members' force standard deviation."""
    calcs = [MLFFDCalculator(str(m)) for m in models]
    for c in candidates:
        forces = []
        for calc in calcs:
            a = c.atoms.copy()
            a.calc = calc
            try:
                forces.append(a.get_forces())
            except MLFFDError:
                forces = None
                break
        if forces is None:
            c.score = float("inf")  # a member refuses the structure: as unsure as it gets
            continue
        f = np.asarray(forces)
        c.score = float(np.sqrt(np.mean(np.sum((f - f.mean(axis=0)) ** 2, axis=-1), axis=0)).max())


def select(candidates: list[Candidate], settings: ActiveSettings, stop: float) -> list[Candidate]:
    """The highest scores above `stop`, keeping picks of one trajectory apart."""
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].score, i))
    picked: list[Candidate] = []
    for i in order:
        c = candidates[i]
        if c.score <= stop or len(picked) >= settings.frames_per_round:
            break
        near = [p for p in picked if p.start == c.start and p.temperature == c.temperature
                and abs(p.step - c.step) < settings.min_separation * settings.sample_every]
        if not near:
            picked.append(c)
    return picked


def frame_key(c: Candidate, round_index: int, seed: int) -> str:
    return f"{c.start}/{SAMPLER}/T{c.temperature:g}/s{seed}/r{round_index:02d}i{c.step:05d}"


def active_learning(data, teacher: str, systems: list[str], out, settings: ActiveSettings, train_config,
                    calculator=None, log=print) -> dict:
    """Rounds of training, candidates (student MD or given trajectories), scoring, selection and
    teacher labelling (see the module docstring); `data` must exist (the seed data set) and grows.
    Returns the per-round record."""
    settings.check()
    data, out = Path(data), Path(out)
    dataset = open_dataset(data)
    if dataset.metadata["teacher_name"] != teacher:
        raise MLFFDError(f"{data} was labelled by {dataset.metadata['teacher_name']!r}, not {teacher!r}")
    out.mkdir(parents=True, exist_ok=True)
    state_path, prov_path = out / "state.json", out / "provenance.json"
    state = _read_json(state_path, {"settings": asdict(settings), "rounds": []})
    if state["settings"] != asdict(settings):
        raise MLFFDError(f"{out} holds an active-learning run with other settings; use another folder")
    provenance = _read_json(prov_path, {})
    if not systems and not settings.trajectories:
        raise MLFFDError("active learning: give systems to explore from, or trajectories to take frames from")
    starts = [] if settings.trajectories else _starts(load_systems(systems), settings)
    calc = calculator
    for r in range(len(state["rounds"]), settings.rounds):
        t0 = time.perf_counter()
        models = train_committee(data, out, r, settings, train_config)
        if settings.trajectories:
            elements = read_metadata(models[0])["elements"]
            candidates = read_trajectories(settings.trajectories, elements, settings.sample_every)
            log(f"active: round {r}: {len(candidates)} candidate frames from {len(settings.trajectories)} trajectories")
        else:
            candidates = explore(models[0], starts, settings, r, log)
        if settings.score == "committee":
            committee_std(models, candidates)
            stop, label, why = settings.stop_std, "committee_force_std", "highest committee disagreement"
        else:
            trained_max = uncertainty_scores(models[0], candidates)
            stop = settings.stop_uncertainty if settings.stop_uncertainty is not None else trained_max
            label, why = "uncertainty", "highest uncertainty"
        picked = select(candidates, settings, stop)
        scores = [c.score for c in candidates]
        record = {"round": r, "score": settings.score, "stop": stop, "candidates": len(candidates),
                  "max_score": float(max(scores, default=0.0)),
                  "mean_score": float(np.mean([s for s in scores if np.isfinite(s)] or [0.0])),
                  "selected": len(picked), "keys": [frame_key(c, r, settings.seed) for c in picked]}
        if picked:
            if calc is None:
                calc = load_teacher(teacher)
            with DatasetWriter(data, dataset.metadata["teacher_name"], dataset.metadata["teacher_version"]) as w:
                have = w.keys()
                for c, key in zip(picked, record["keys"]):
                    if key in have:  # labelled before a kill
                        continue
                    atoms = c.atoms.copy()
                    atoms.calc = calc
                    atoms.get_potential_energy()
                    atoms.get_forces()
                    if np.all(atoms.pbc):
                        atoms.get_stress()
                    w.append(atoms, sampler=SAMPLER, temperature=c.temperature, seed=settings.seed, key=key)
                    provenance[key] = {"round": r, "start": c.start, "temperature_k": c.temperature, "step": c.step,
                                       label: c.score, "why": why}
                    _write_json(prov_path, provenance)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        state["rounds"].append(record)
        _write_json(state_path, state)
        unit = " eV/A" if settings.score == "committee" else ""
        log(f"active: round {r}: largest {settings.score} {record['max_score']:.3g}{unit}, labelled "
            f"{record['selected']} frames ({record['seconds']:.0f} s)")
        if not picked:
            log(f"active: every candidate at or below {stop:.3g}{unit}: done")
            break
    return state


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "active", help="grow a data set where the students are unsure (student MD or your trajectories, teacher labels)",
        description="Active learning on an existing teacher-labelled data set: each round trains a committee of "
                    "students (or one, scored by its own uncertainty), runs student MD over a temperature ladder "
                    "(or reads your production trajectories), and has the teacher label the frames the committee "
                    "disagrees on most (or the student is least sure of). Re-run the same command to resume.")
    p.add_argument("data", help="seed data set (mlffd generate); the labelled frames are appended to it")
    p.add_argument("--system", action="append", default=[],
                   help="built-in system or structure file to explore from; repeatable (not with --trajectory)")
    p.add_argument("--trajectory", action="append", default=[],
                   help="candidate frames from this file instead of student MD (LAMMPS dump with an element "
                        "column, ASE .traj, extxyz; every --sample-every-th frame); repeatable")
    p.add_argument("--score", choices=SCORES, default="committee",
                   help="committee: force disagreement of --committee students; uncertainty: one student's own "
                        "per-atom uncertainty (docs/artifact.md)")
    p.add_argument("--model", default=None,
                   help="with --score uncertainty: round 0's student, the exported .pt that ran your MD")
    p.add_argument("--stop-uncertainty", type=float, default=None,
                   help="with --score uncertainty: label only frames above this (default: the largest "
                        "uncertainty of the student's own training atoms)")
    p.add_argument("--out", required=True, help="folder for the committees, state.json and provenance.json")
    p.add_argument("--teacher", default=None, help="teacher (default: the one that labelled DATA)")
    p.add_argument("--rounds", type=int, default=ActiveSettings.rounds)
    p.add_argument("--committee", type=int, default=ActiveSettings.committee, help="students per committee")
    p.add_argument("--temperatures", default="300,900,1500", help="MD ladder, K")
    p.add_argument("--md-steps", type=int, default=ActiveSettings.md_steps, help="steps per trajectory")
    p.add_argument("--sample-every", type=int, default=ActiveSettings.sample_every)
    p.add_argument("--frames-per-round", type=int, default=ActiveSettings.frames_per_round)
    p.add_argument("--stop-std", type=float, default=ActiveSettings.stop_std,
                   help="eV/A: stop when the committee agrees this well everywhere")
    p.add_argument("--no-vacancy-starts", action="store_true", help="explore from the crystals only")
    p.add_argument("--config", help="training settings (YAML/TOML/JSON, as for mlffd train)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per member per round (default: the config's)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


def _run(args) -> int:
    config = TrainConfig.read(args.config) if args.config else {}
    if args.epochs is not None:
        config.update(epochs=args.epochs, time_budget_minutes=None)
    settings = ActiveSettings(rounds=args.rounds, committee=args.committee,
                              temperatures=comma_separated(args.temperatures, "--temperatures", unit="K"), md_steps=args.md_steps,
                              sample_every=args.sample_every, frames_per_round=args.frames_per_round,
                              stop_std=args.stop_std, vacancy_starts=not args.no_vacancy_starts, seed=args.seed,
                              score=args.score, stop_uncertainty=args.stop_uncertainty,
                              trajectories=args.trajectory, model=args.model)
    teacher = args.teacher or open_dataset(args.data).metadata["teacher_name"]
    state = active_learning(args.data, teacher, args.system, args.out, settings, TrainConfig.from_dict(config))
    print(json.dumps(state["rounds"], indent=1))
    return 0
