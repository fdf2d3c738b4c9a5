"""Active learning: the student is cheap, the teacher is not.

    report = active_learning("data.h5", "sevennet-0", ["si"], "al/", ActiveSettings(rounds=3))

Each round:
1. train a committee of students on the data set (different seeds; from round 2 on, each member
   warm-starts from its own weights of the round before);
2. run student MD (ASE, member 0) at every temperature of the ladder from each system's crystal
   and from the same crystal with a vacancy, keeping a candidate frame every `sample_every` steps
   (a run that breaks down keeps what it had: the frames before a blow-up are the ones to learn);
3. score each candidate by the committee's disagreement: the largest per-atom standard deviation
   of the members' forces (eV/A);
4. label the highest-scoring candidates with the teacher (at most `frames_per_round`, at least
   `min_separation` samples apart in one trajectory, only above `stop_std`) and append them to the
   data set as sampler `active`;
stop when no candidate scores above `stop_std`, or after `rounds` rounds.

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

import numpy as np

from mlffd.errors import MLFFDError

SAMPLER = "active"


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

    def check(self) -> "ActiveSettings":
        for name in ("rounds", "committee", "md_steps", "sample_every", "frames_per_round"):
            if int(getattr(self, name)) < (2 if name == "committee" else 1):
                raise MLFFDError(f"active learning: {name} must be at least {2 if name == 'committee' else 1}")
        if not self.temperatures or min(self.temperatures) <= 0:
            raise MLFFDError("active learning: give positive MD temperatures")
        return self


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def train_committee(data: Path, out: Path, round_index: int, settings: ActiveSettings, train_config,
                    quiet: bool = True) -> list[Path]:
    """Train (or resume) the members of one round; returns their exported .pt files (float64)."""
    from mlffd.training.config import TrainConfig
    from mlffd.training.trainer import Trainer
    from mlffd.export.freeze import export_checkpoint

    models = []
    for k in range(settings.committee):
        run = out / f"round{round_index:02d}" / f"member{k}"
        model = run.parent / f"member{k}.pt"
        if not model.exists():  # exported last: a member with a .pt is finished (the data has grown since)
            previous = out / f"round{round_index - 1:02d}" / f"member{k}"
            config = TrainConfig.from_dict({**train_config.to_dict(), "seed": settings.seed + k,
                                            "init_from": str(previous) if round_index > 0 else None})
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
        atoms = system.images[0]
        out.append((system.name, atoms))
        if settings.vacancy_starts and len(atoms) > 2:
            vac = atoms.copy()
            del vac[0]
            out.append((f"{system.name}-vac", vac))
    return out


def explore(model: Path, starts, settings: ActiveSettings, round_index: int, log=print) -> list[Candidate]:
    """Student MD from every start at every temperature; candidates every `sample_every` steps."""
    from ase import units
    from ase.md.langevin import Langevin

    from mlffd.calculator import MLFFDCalculator
    from mlffd.data.sampling import derive_seed, md_timestep
    from mlffd.validate.properties.dynamics import initial_velocities

    calc = MLFFDCalculator(str(model))
    candidates = []
    for name, start in starts:
        for temperature in settings.temperatures:
            seed = derive_seed(settings.seed, f"active/r{round_index}/{name}/T{temperature:g}")
            atoms = start.copy()
            atoms.calc = calc
            initial_velocities(atoms, temperature, seed)
            dyn = Langevin(atoms, md_timestep(atoms) * units.fs, temperature_K=temperature, friction=0.02 / units.fs,
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


def committee_std(models: list[Path], candidates: list[Candidate]) -> None:
    """Sets each candidate's score: max over atoms of the members' force standard deviation."""
    from mlffd.calculator import MLFFDCalculator

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


def select(candidates: list[Candidate], settings: ActiveSettings) -> list[Candidate]:
    """The highest scores above `stop_std`, keeping picks of one trajectory apart."""
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].score, i))
    picked: list[Candidate] = []
    for i in order:
        c = candidates[i]
        if c.score <= settings.stop_std or len(picked) >= settings.frames_per_round:
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
    """Rounds of committee training, student MD, selection and teacher labelling (see the module
    docstring); `data` must exist (the seed data set) and grows. Returns the per-round record."""
    from mlffd.data.dataset import DatasetWriter, open_dataset
    from mlffd.data.systems import load_systems

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
    starts = _starts(load_systems(systems), settings)
    calc = calculator
    for r in range(len(state["rounds"]), settings.rounds):
        t0 = time.perf_counter()
        models = train_committee(data, out, r, settings, train_config)
        candidates = explore(models[0], starts, settings, r, log)
        committee_std(models, candidates)
        picked = select(candidates, settings)
        scores = [c.score for c in candidates]
        record = {"round": r, "candidates": len(candidates), "max_std": float(max(scores, default=0.0)),
                  "mean_std": float(np.mean([s for s in scores if np.isfinite(s)] or [0.0])),
                  "selected": len(picked), "keys": [frame_key(c, r, settings.seed) for c in picked]}
        if picked:
            if calc is None:
                from mlffd.teachers.registry import load_teacher

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
                                       "committee_force_std": c.score, "why": "highest committee disagreement"}
                    _write_json(prov_path, provenance)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        state["rounds"].append(record)
        _write_json(state_path, state)
        log(f"active: round {r}: max committee force std {record['max_std']:.3f} eV/A, labelled "
            f"{record['selected']} frames ({record['seconds']:.0f} s)")
        if not picked:
            log(f"active: every candidate below {settings.stop_std} eV/A: done")
            break
    return state


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "active", help="grow a data set where a committee of students disagrees (student MD, teacher labels)",
        description="Active learning on an existing teacher-labelled data set: each round trains a committee of "
                    "students, runs student MD over a temperature ladder, and has the teacher label the frames the "
                    "committee disagrees on most. Re-run the same command to resume.")
    p.add_argument("data", help="seed data set (mlffd generate); the labelled frames are appended to it")
    p.add_argument("--system", action="append", required=True, help="built-in system or structure file; repeatable")
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
    from mlffd.data.dataset import open_dataset
    from mlffd.data.generate import parse_temperatures
    from mlffd.training.config import TrainConfig

    config = TrainConfig.read(args.config) if args.config else {}
    if args.epochs is not None:
        config.update(epochs=args.epochs, time_budget_minutes=None)
    settings = ActiveSettings(rounds=args.rounds, committee=args.committee,
                              temperatures=parse_temperatures(args.temperatures), md_steps=args.md_steps,
                              sample_every=args.sample_every, frames_per_round=args.frames_per_round,
                              stop_std=args.stop_std, vacancy_starts=not args.no_vacancy_starts, seed=args.seed)
    teacher = args.teacher or open_dataset(args.data).metadata["teacher_name"]
    state = active_learning(args.data, teacher, args.system, args.out, settings, TrainConfig.from_dict(config))
    print(json.dumps(state["rounds"], indent=1))
    return 0
