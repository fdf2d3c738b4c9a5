"""`mlffd distill`: generate -> train -> export -> validate -> bench in one command.

Re-running the same command resumes: generation and training pick up where they stopped, export,
validation and bench run again (the validation's teacher side comes from its cache, so a rerun
asks the teacher nothing it already answered). A killed distillation loses at most the teacher
call or training epoch in flight.

    DIR/data/train.h5, DIR/data/test.h5     teacher-labelled frames (test: an unseen temperature)
    DIR/run/                                training run (checkpoints, metrics, parity plot)
    DIR/model.pt                            the deployable student
    DIR/in.lammps                           a LAMMPS deck for it
    DIR/report/, DIR/bench/                 physics report (student vs teacher) and speed benchmark
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ase.io import write

from mlffd.bench import bench
from mlffd.bench.benchmark import unit_cell
from mlffd.data.generate import generate_dataset, teacher_calls
from mlffd.data.systems import BUILTIN_SYSTEMS, load_system, structure_specs, with_supercells
from mlffd.errors import MLFFDError
from mlffd.neighbours import periodic_3d
from mlffd.reference import reference_elements
from mlffd.teachers.registry import load_teacher
from mlffd.training.config import DEFAULT_PRESET, PRESETS, TrainConfig
from mlffd.training.trainer import Trainer
from mlffd.validate import validate
from mlffd.validate.properties.crystal import load_crystal
from mlffd.validate.properties.report import table_markdown

# Si's temperature ladder (K), for a crystal that melts where Si does; `--melting-point` scales it for
# one that melts elsewhere (`ladder_scale`). Held out: the test set is sampled at a temperature the
# training data never saw.
TRAIN_TEMPERATURES = [300.0, 600.0, 900.0, 1500.0]
TEST_TEMPERATURE = 1200.0
MD_STRIDE = 5  # teacher MD steps per kept frame
# Validation MD: one temperature inside the working range and one above it, whatever extra
# coverage a recipe adds (so every recipe is judged at the same temperatures).
VALIDATE_TEMPERATURES = [1200.0, 2000.0]
NEAR_EQUILIBRIUM_TEMPERATURES = [30.0, 100.0]  # rattles of 0.017 and 0.032 A RMS, small strains
HOT_TEMPERATURES = [2000.0, 2500.0]
SI_MELTING_K = 1687.0  # the melting point the ladder above was measured for


@dataclass(frozen=True)
class Part:
    """One `mlffd generate` plan of a recipe: its frames per 15 minutes of budget, temperatures,
    sampler shares (mlffd.data.sampling; rattles and strains take the rest) and whether it samples
    around the teacher's relaxed structure (`relax`) or the structure as given."""

    frames: int
    temperatures: tuple = tuple(TRAIN_TEMPERATURES)
    md_fraction: float = 0.0
    vacancy_fraction: float = 0.0
    fractions: dict = field(default_factory=dict)
    relax: bool = False


@dataclass(frozen=True)
class Recipe:
    """Training frames (parts labelled into one file) and the loss settings measured with them."""

    parts: tuple
    train: dict = field(default_factory=dict)
    train_by_preset: dict = field(default_factory=dict)  # preset -> settings over `train` for that student
    note: str = ""

    def train_settings(self, preset: str) -> dict:
        """The loss and student settings of this recipe for a student of `preset`."""
        return {**self.train, **self.train_by_preset.get(preset, {}), "preset": preset}


# Measured side by side in the fidelity lab (benchmarks/fidelity, docs/results.md section 11).
RECIPES = {
    "random": Recipe((Part(160, md_fraction=0.15),), note="rattles, small strains and short teacher MD"),
    "physics": Recipe((Part(160, md_fraction=0.15, vacancy_fraction=0.15,
                            fractions={"volume": 0.15, "elastic": 0.2, "interstitial": 0.05}),),
                      note="the random plan's kinds plus volumes, elastic strains, vacancies and interstitials"),
    "fidelity": Recipe(
        (Part(160, md_fraction=0.15, relax=True),
         Part(80, temperatures=tuple(NEAR_EQUILIBRIUM_TEMPERATURES), relax=True),
         Part(108, vacancy_fraction=1 / 3, fractions={"elastic": 0.44, "volume": 0.22}, relax=True),
         # 48, not 24: the 2000 K forces (docs/results.md section 11)
         Part(48, temperatures=tuple(HOT_TEMPERATURES), md_fraction=1.0, relax=True),
         # ~6 s of teacher relaxation each (64-atom Si): the costliest frames, and what C44 and C11 need
         Part(32, temperatures=(300.0,), fractions={"relaxed_strain": 1.0}, relax=True),
         # the relaxed vacancy E_vac measures (~8 s each for Si, ~19 s for 72-atom quartz)
         Part(12, temperatures=(300.0,), fractions={"relaxed_vacancy": 1.0}, relax=True)),
        # 16 radial basis functions: C11 and C' need the bond's curvature resolved (docs/results.md section
        # 11); the radial network is tabulated at export, so they cost nothing per MD step. The relaxed
        # vacancies' near-zero forces would weigh ~60x a hot frame's under relative errors: at 0.1 they
        # keep C44 (section 11)
        train={"relative_force_floor": 0.2, "stress_weight": 10.0, "energy_weight": 300.0, "n_radial": 16,
               "sampler_force_weights": {"relaxed_vacancy": 0.1}},
        # the 2-layer student resolves C11's sharp fall with strain only with 32 (Si at budget 30: C11 -2.5 %
        # against -5.1 % with 16, same frames and epochs; section 11), at no cost per epoch. The ZBL wall:
        # the Cu student's molten 2000 K MD collapsed onto a 1.14 A pair without it; Si's and quartz's rows
        # the same with it (sections 11, 14); 1.1-1.25x per MD step in LAMMPS (Cu)
        train_by_preset={"small": {"n_radial": 32, "pair_repulsion": True}},
        note="around the teacher's relaxed crystal: the random plan plus near-equilibrium rattles and strains, "
             "clean elastic strains, vacancies, volumes, teacher MD above the working temperatures, strained "
             "cells and vacancies whose ions the teacher relaxed; relative force errors, stress weight 10, "
             "energy weight 300, 16 radial basis functions (32 and a ZBL wall for the 2-layer small student)"),
}
DEFAULT_RECIPE = "fidelity"
# The student's size by budget (docs/results.md section 11, `--budget 30`, 2026-12-06): the 2-layer `small`
# put quartz at 10 of its 13 property rows (`fast` 8) and, with 32 radial functions, Si at every milestone
# row in two seeds (`fast`: all but C44 and the vacancy, each by a hair), at ~1.5-1.9x `fast`'s cost per
# MD step. The default demo's 15 minutes stay with `fast`, the training default, which gets the epochs it
# needs there.
LARGER_STUDENT_BUDGET = 30.0
LARGER_STUDENT_PRESET = "small"
# Recipes whose samplers strain or scale the cell (volumes, elastic strains) need a 3D-periodic
# structure; the default falls back to `random` for anything else (a molecule, a slab).
PERIODIC_ONLY = {"physics", "fidelity"}
FALLBACK_RECIPE = "random"


@dataclass(frozen=True)
class Stages:
    """What distill will run on a system, decided before the first teacher call: the recipe, the
    crystals that validate takes (one spec per 3D-periodic structure: `FILE@N` for each of a
    file's several; bench takes the first; none when no structure is a crystal), the structure the
    LAMMPS deck starts from (a built-in as given, supercell included; else the first crystal) and the
    stages skipped, each with its reason."""

    recipe: str
    crystals: tuple[str, ...]
    deck: str | None
    skipped: dict


def check_stages(system: str, teacher: str, recipe: str | None) -> Stages:
    """Every stage's needs checked up front, so that a structure is never refused by a later stage
    after minutes of teacher calls and training: the file reads, the teacher covers its elements,
    the recipe suits it, and validate and bench accept it (or are skipped, saying why)."""
    images = load_system(system).images
    elements = sorted({s for a in images for s in a.get_chemical_symbols()})
    covered = reference_elements(teacher)
    if covered is not None and set(elements) - covered:
        raise MLFFDError(f"teacher {teacher} does not cover element(s) {', '.join(sorted(set(elements) - covered))} "
                         f"of {system}")
    name = choose_recipe(recipe, system)
    spec = system.split(":")[0]
    builtin = spec.lower() in BUILTIN_SYSTEMS
    specs = [spec] if builtin else structure_specs(system)
    crystals = tuple(s for s, image in zip(specs, images) if periodic_3d(image))
    if not crystals:
        reason = f"{system} is not periodic in x, y and z (the property suite and the bench need a crystal)"
        return Stages(name, (), None, {"validate": reason, "bench": reason})
    skipped = {f"validate {s}": "not periodic in x, y and z: trained on, no property rows (the suite needs a crystal)"
               for s, image in zip(specs, images) if not periodic_3d(image)}
    for crystal in crystals:
        load_crystal(crystal)
    unit_cell(elements, crystals[0])
    return Stages(name, crystals, system if builtin else crystals[0], skipped)


def choose_recipe(name: str | None, system: str) -> str:
    """The recipe to run: the one asked for, or the default that suits the structure; a recipe the
    structure cannot take is refused before any teacher call."""
    periodic = all(periodic_3d(a) for a in load_system(system).images)
    if name is None:
        return DEFAULT_RECIPE if periodic else FALLBACK_RECIPE
    if name in PERIODIC_ONLY and not periodic:
        raise MLFFDError(f"recipe {name!r} strains and scales the cell, so it needs a structure periodic in x, y "
                         f"and z; {system} is not (use the recipe {FALLBACK_RECIPE!r})")
    return name


def register(subparsers) -> None:
    p = subparsers.add_parser("distill", help="the whole pipeline on one system, with an offline default")
    p.add_argument("--teacher", default="sevennet-0")
    p.add_argument("--system", default="si", help="built-in system (si, cu, sio2, ...) or a structure file (of several "
                                                   "structures: one student for all, validated crystal by crystal)")
    p.add_argument("--out", required=True, help="output folder (re-run to resume)")
    p.add_argument("--budget", type=float, default=15.0, metavar="MINUTES",
                   help="rough wall-time budget on 2 cores; sets frames, training time, MD and bench sizes")
    p.add_argument("--frames", type=int, help="training frames (default: from the budget and the recipe)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help=f"training frames and loss settings (default: {DEFAULT_RECIPE} for a 3D-periodic structure, "
                        f"else {FALLBACK_RECIPE}): " + "; ".join(f"{k}: {r.note}" for k, r in RECIPES.items()))
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help=f"student preset (default: {LARGER_STUDENT_PRESET} from a {LARGER_STUDENT_BUDGET:g}-minute budget "
                        f"on, else {DEFAULT_PRESET})")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="dtype of the exported model")
    p.add_argument("--melting-point", type=float, default=None, metavar="K",
                   help=f"the structure's melting point: every temperature of the plan (training, held out, "
                        f"validation) is Si's times K / {SI_MELTING_K:g} (default: Si's)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def plan(budget: float, frames: int | None, recipe: Recipe = RECIPES[DEFAULT_RECIPE],
         preset: str | None = None) -> dict:
    """Split the budget: ~10% labelling, ~45% training, ~30% the physics suite, the rest bench; and the
    student's preset (the one asked for, else by budget)."""
    scale = budget / 15.0
    return {
        "preset": preset or (LARGER_STUDENT_PRESET if budget >= LARGER_STUDENT_BUDGET else DEFAULT_PRESET),
        "train_frames": frames or max(40, int(sum(p.frames for p in recipe.parts) * scale)),
        "test_frames": max(10, int(24 * scale)),
        "train_minutes": max(1.0, 0.45 * budget),
        "validate_minutes": max(2.0, 0.3 * budget),
        "bench_sizes": [64, 512] if budget >= 10 else [64],
    }


def part_plans(recipe: Recipe, total: int, seed: int) -> list[tuple[Part, int, int]]:
    """(part, frames, seed) of each part: the training frames split in proportion to the parts' frames
    (each at least 1), and each part its own seed, so frame keys (sampler, temperature, seed, index)
    never collide."""
    weights = [p.frames for p in recipe.parts]
    counts = [max(1, int(round(total * w / sum(weights)))) for w in weights]
    counts[0] += total - sum(counts)
    return [(part, n, seed + 100 * k) for k, (part, n) in enumerate(zip(recipe.parts, counts))]


def labelling_jobs(out: Path, recipe: Recipe, train_frames: int, test_frames: int, seed: int,
                   cutoff: float, temperature_scale: float = 1.0) -> list[tuple[Path, int, dict]]:
    """(file, frames, generate_dataset settings) of every labelling call distill makes, in order: the
    recipe's parts into train.h5, then the held-out frames into test.h5, each part's temperatures
    Si's times `temperature_scale`. A structure file's cell is repeated until the student's cutoff
    fits in it (built-ins have theirs)."""
    jobs = [(out / "data" / "train.h5", frames,
             {"temperatures": scaled(part.temperatures, temperature_scale), "seed": part_seed, "md_stride": MD_STRIDE,
              "md_fraction": part.md_fraction, "vacancy_fraction": part.vacancy_fraction,
              "fractions": part.fractions, "relax": part.relax, "supercell_width": cutoff})
            for part, frames, part_seed in part_plans(recipe, train_frames, seed)]
    jobs.append((out / "data" / "test.h5", test_frames,
                 {"temperatures": scaled([TEST_TEMPERATURE], temperature_scale), "seed": seed + 1000, "md_fraction": 0.0,
                  "supercell_width": cutoff}))
    return jobs


def seconds_per_teacher_call(calc, atoms, calls: int = 4) -> float:
    """Wall time of one teacher label (energy, forces, and stress when 3D-periodic) of `atoms`: the
    fastest call after the first (a cold model's; this machine's speed drifts, and a warning should not
    come from a slow moment), each on freshly rattled positions so that nothing is cached."""
    atoms = atoms.copy()
    atoms.calc = calc
    times = []
    for i in range(max(2, calls)):
        atoms.rattle(0.01, seed=i)
        t = time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        if periodic_3d(atoms):
            atoms.get_stress()
        times.append(time.perf_counter() - t)
    return min(times[1:])


def labelling_estimate(calls: int, seconds_per_call: float, natoms: int, budget: float) -> tuple[dict, str | None]:
    """The plan's labelling cost (teacher calls, time) and a warning when it alone passes the budget,
    which sets the frames through the recipe, not through the teacher's speed on this structure."""
    minutes = calls * seconds_per_call / 60.0
    estimate = {"teacher_calls": calls, "seconds_per_call": round(seconds_per_call, 3), "atoms": natoms,
                "minutes": round(minutes, 1)}
    warning = None
    if minutes > budget:
        warning = (f"labelling alone will take about {minutes:.0f} minutes ({calls:,} teacher calls at "
                   f"{seconds_per_call:.2f} s on {natoms} atoms), more than the whole {budget:g}-minute budget; "
                   f"fewer frames (--frames) keep to it")
    return estimate, warning


def ladder_scale(melting_point: float | None, system: str) -> tuple[float, str]:
    """The factor on Si's temperatures and why: the user's `--melting-point` over Si's, else 1. No
    estimate of the teacher's own melting point is made: the three tried (heating ramps of the teacher's
    MD, the harmonic Lindemann criterion on its phonons) were too noisy or 2-4x off on some crystals
    (benchmarks/results/issue32/melting_estimators)."""
    if melting_point is not None:
        if not 50.0 <= melting_point <= 6000.0:
            raise MLFFDError(f"--melting-point is in K, between 50 and 6000; got {melting_point:g}")
        return melting_point / SI_MELTING_K, f"--melting-point {melting_point:g} K (Si: {SI_MELTING_K:g} K)"
    why = f"Si's ladder (for a crystal that melts near Si's {SI_MELTING_K:g} K)"
    if not_si(system):
        why += "; --melting-point scales it for one that melts elsewhere"
    return 1.0, why


def not_si(system: str) -> bool:
    """A system other than the built-in Si, the one Si's temperatures were measured on."""
    return system.split(":")[0].lower() != "si"


def keep_ladder(path: Path, scale: float, why: str) -> None:
    """Record the ladder a distillation's data were labelled on, and refuse a rerun into the same folder
    on another: generate would add the new temperatures' frames to the old ones and train on both. A
    folder labelled before the ladder was recorded was labelled on Si's."""
    if not path.exists() and (path.parent / "train.h5").exists():
        path.write_text(json.dumps({"scale": 1.0, "from": "Si's ladder, before the ladder was recorded"}))
    if not path.exists():
        path.write_text(json.dumps({"scale": scale, "from": why}))
        return
    before = json.loads(path.read_text())
    if abs(before["scale"] - scale) > 1e-9:
        raise MLFFDError(f"{path.parent.parent} was labelled at Si's temperatures x {before['scale']:.4g} "
                         f"({before['from']}), this run asks x {scale:.4g}: give another --out, or the same "
                         f"--melting-point as before")


def scaled(temperatures, scale: float) -> list[float]:
    """Si's temperatures (K) times `scale`, to 1 K."""
    return [float(round(t * scale)) for t in temperatures]


def lammps_deck(model: Path, elements: list[str]) -> str:
    types = " ".join(elements)
    return f"""# NVT then NVE with the distilled student ({model.name}); run: lmp -in in.lammps
units           metal
atom_style      atomic
boundary        p p p
read_data       system.data
pair_style      mlffd
pair_coeff      * * {model.name} {types}
velocity        all create 600.0 12345 mom yes rot yes
timestep        0.001
thermo          100
thermo_style    custom step temp pe etotal press
fix             nvt all nvt temp 600.0 600.0 0.1
run             1000
unfix           nvt
fix             nve all nve
run             1000
"""


def run(args) -> int:
    # the fused export's module costs ~2 s to import: when the export stage runs, not at CLI start
    from mlffd.export.freeze import export_checkpoint

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise MLFFDError(f"--out {out} exists and is not a directory; give an output folder (new or to resume)")
    (out / "data").mkdir(parents=True, exist_ok=True)
    stages = check_stages(args.system, args.teacher, args.recipe)
    recipe_name = stages.recipe
    recipe = RECIPES[recipe_name]
    steps = plan(args.budget, args.frames, recipe, args.preset)
    timings = {}
    start = time.perf_counter()

    def stage(name: str) -> None:
        timings[name] = round(time.perf_counter() - start - sum(timings.values()), 1)
        print(f"[distill] {name} done ({timings[name]:.0f} s)", flush=True)

    settings = {**recipe.train_settings(steps["preset"]), "time_budget_minutes": steps["train_minutes"],
                "epochs": None, "seed": args.seed}
    config = TrainConfig.from_dict(settings)
    sampled, supercell = with_supercells(load_system(args.system), config.cutoff)
    scale, ladder = ladder_scale(args.melting_point, args.system)
    keep_ladder(out / "data" / "ladder.json", scale, ladder)
    jobs = labelling_jobs(out, recipe, steps["train_frames"], steps["test_frames"], args.seed,
                          config.cutoff, scale)
    calls = sum(teacher_calls(path, [args.system], frames, **kw) for path, frames, kw in jobs)
    # one teacher for every part (and the estimate), loaded only when there is something to label
    teacher = load_teacher(args.teacher) if calls else None
    labelling, warning = labelling_estimate(
        calls, seconds_per_teacher_call(teacher, sampled.images[0]) if calls else 0.0, len(sampled.images[0]),
        args.budget)
    training_temperatures = sorted({t for part in recipe.parts for t in scaled(part.temperatures, scale)})
    validate_temperatures = scaled(VALIDATE_TEMPERATURES, scale)
    # every choice made for this system, printed now and kept in summary.json
    shown = {**steps, "recipe": recipe_name, "n_radial": config.n_radial, "pair_repulsion": config.pair_repulsion,
             "supercell": supercell or "as given (a built-in's own, or a cell already wide enough)",
             "temperatures_K": {"training": training_temperatures, "held_out": scaled([TEST_TEMPERATURE], scale)[0],
                                "validate": validate_temperatures, "scale": round(scale, 4), "from": ladder},
             "validated": list(stages.crystals), "labelling": labelling}
    print(f"[distill] plan: {json.dumps(shown)}", flush=True)
    if args.melting_point is None and not_si(args.system):
        print(f"[distill] note: the temperatures are Si's, for a crystal that melts near {SI_MELTING_K:g} K; "
              f"--melting-point K scales them all for {args.system}", flush=True)
    if warning:
        print(f"[distill] warning: {warning}", flush=True)
    for name, reason in stages.skipped.items():
        print(f"[distill] {name} will be skipped: {reason}", flush=True)
    if len(stages.crystals) > 1:
        print(f"[distill] validate will run on each crystal ({', '.join(stages.crystals)}), sharing its budget; "
              f"bench and the LAMMPS deck on {stages.crystals[0]}", flush=True)
    for path, frames, kw in jobs:
        generate_dataset(path, args.teacher, [args.system], frames, calculator=teacher, **kw)
    stage("generate")

    trainer = Trainer(str(out / "data" / "train.h5"), str(out / "run"), config, [str(out / "data" / "test.h5")])
    if trainer.progress() < 1.0 or not (out / "run" / "metrics.json").exists():
        trainer.run()
    stage("train")

    model = out / "model.pt"
    meta = export_checkpoint(out / "run", model, dtype=args.dtype)
    stage("export")

    reports, result = {}, {}
    several = len(stages.crystals) > 1
    for crystal in stages.crystals:  # a file of several crystals: one report each, the budget shared
        where = out / "report" / load_system(crystal).name if several else out / "report"
        reports[crystal] = validate(str(model), args.teacher, where, system=crystal, data=out / "data" / "test.h5",
                                    budget_minutes=steps["validate_minutes"] / len(stages.crystals),
                                    temperatures=validate_temperatures, seed=args.seed)
    if stages.crystals:
        stage("validate")
        result = bench(str(model), args.teacher, steps["bench_sizes"], ("ase", "lammps"), str(out / "bench"),
                       long_steps=None, long_steps_ase=None, system=stages.crystals[0])
        stage("bench")

    deck = _write_deck(out, model, meta["elements"], stages.deck) if stages.deck else None
    # each row names its structure when there are several
    rows = [{**row, "system": crystal} if several else row for crystal, r in reports.items() for row in r["table"]]
    first = next(iter(reports.values()), None)
    summary = {"model": str(model), **_held_out(first, out / "run", out / "data" / "test.h5"),
               "properties": rows,
               "goals_met": sum(r["ok"] is True for r in rows) if reports else None,
               "goals_missed": sum(r["ok"] is False for r in rows) if reports else None,
               "teacher_calls_validate": sum(r["teacher_calls"]["calls"] for r in reports.values()),
               "speedup_vs_teacher": result.get("speedup_vs_teacher", {}),
               "report": (str(out / "report") if several else str(out / "report" / "report.md")) if reports else None,
               "bench": str(out / "bench" / "bench.md") if result else None,
               "lammps_deck": str(deck) if deck else None,
               "skipped": stages.skipped,
               "plan": shown,
               "stage_seconds": timings}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(_summary_text(summary))
    return 0


def _held_out(report: dict | None, run: Path, test: Path) -> dict:
    """Force and energy errors on the held-out frames: validate's, else the training run's own."""
    if report is not None:
        forces, energy = report["frames"]["forces"], report["frames"]["energy"]["mae_per_atom"]
    else:
        forces = json.loads((run / "metrics.json").read_text())[f"test:{test}"]
        energy = forces["energy_mae_per_atom"]
    return {"forces_r2": forces["r2"], "forces_mae_ev_per_a": forces["mae"], "forces_rel_mae": forces["rel_mae"],
            "energy_mae_ev_per_atom": energy}


def _write_deck(out: Path, model: Path, elements: list[str], system: str) -> Path:
    """A LAMMPS deck and data file for a 3D-periodic structure (one: a built-in or `FILE@N`)."""

    atoms = load_system(system).images[0].repeat((2, 2, 2))
    write(out / "system.data", atoms, format="lammps-data", specorder=elements, masses=True)
    (out / "in.lammps").write_text(lammps_deck(model, elements))
    return out / "in.lammps"


def _summary_text(s: dict) -> str:
    speed = ", ".join(f"{n} atoms: {x:.0f}x" for n, x in s["speedup_vs_teacher"].items() if x) or "n/a"
    properties = []
    if s["properties"]:
        properties = ["student vs teacher, property by property (each computed the same way for both):"]
        systems = list(dict.fromkeys(row.get("system") for row in s["properties"]))
        for system in systems:
            properties += [""] + ([f"{system}:"] if system else [])
            properties.append(table_markdown([row for row in s["properties"] if row.get("system") == system]))
        properties += ["", f"goals met: {s['goals_met']}, missed: {s['goals_missed']}"]
    properties += [f"{stage} skipped: {reason}" for stage, reason in s["skipped"].items()]
    return "\n".join([
        "",
        "== mlffd distill: summary ==",
        *properties,
        f"force R^2 vs teacher (held-out, unseen T): {s['forces_r2']:.4f}   "
        f"MAE {s['forces_mae_ev_per_a']:.4f} eV/A ({100 * s['forces_rel_mae']:.1f}% of mean |F|)",
        f"energy MAE: {1000 * s['energy_mae_ev_per_atom']:.2f} meV/atom",
        f"speed-up vs teacher per MD step (ASE): {speed}",
        f"model: {s['model']}   LAMMPS deck: {s['lammps_deck']}",
        f"report: {s['report']}   bench: {s['bench']}",
    ])
