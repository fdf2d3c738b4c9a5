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
from pathlib import Path

from mlffd.errors import MLFFDError

# Held out: the test set is sampled at a temperature the training data never saw.
TRAIN_TEMPERATURES = [300.0, 600.0, 900.0, 1500.0]
TEST_TEMPERATURE = 1200.0
# Shares of the training frames per sampler (mlffd.data.sampling); rattles and strains take the rest.
# "random": rattles, small strains and short teacher MD. "physics": also what the property suite
# probes: volumes across the EOS range, normal and shear strains past the elastic range, vacancies
# and interstitials of every element.
SAMPLING = {
    "random": {"md_fraction": 0.15, "vacancy_fraction": 0.0, "fractions": {}},
    "physics": {"md_fraction": 0.15, "vacancy_fraction": 0.15,
                "fractions": {"volume": 0.15, "elastic": 0.2, "interstitial": 0.05}},
}


def register(subparsers) -> None:
    p = subparsers.add_parser("distill", help="the whole pipeline on one system, with an offline default")
    p.add_argument("--teacher", default="sevennet-0")
    p.add_argument("--system", default="si", help="built-in system (si, cu, sio2, ...) or a structure file")
    p.add_argument("--out", required=True, help="output folder (re-run to resume)")
    p.add_argument("--budget", type=float, default=15.0, metavar="MINUTES",
                   help="rough wall-time budget on 2 cores; sets frames, training time, MD and bench sizes")
    p.add_argument("--frames", type=int, help="training frames (default: from the budget)")
    p.add_argument("--sampling", choices=sorted(SAMPLING), default="random",
                   help="training-frame plan: random (rattles, strains, MD) or physics (adds volumes, "
                        "elastic strains, vacancies, interstitials)")
    p.add_argument("--preset", default=None, help="student preset (default: the training default)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="dtype of the exported model")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def plan(budget: float, frames: int | None) -> dict:
    """Split the budget: ~10% labelling, ~45% training, ~30% the physics suite, the rest bench."""
    scale = budget / 15.0
    return {
        "train_frames": frames or max(40, int(160 * scale)),
        "test_frames": max(10, int(24 * scale)),
        "train_minutes": max(1.0, 0.45 * budget),
        "validate_minutes": max(2.0, 0.3 * budget),
        "bench_sizes": "64,512" if budget >= 10 else "64",
    }


def lammps_deck(model: Path, elements: list[str], system: str) -> str:
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
    from mlffd.data.generate import generate_dataset
    from mlffd.training.config import TrainConfig
    from mlffd.training.trainer import Trainer
    from mlffd.validate import bench, validate
    from mlffd.export.freeze import export_checkpoint

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise MLFFDError(f"--out {out} exists and is not a directory; give an output folder (new or to resume)")
    (out / "data").mkdir(parents=True, exist_ok=True)
    steps = plan(args.budget, args.frames)
    timings = {}
    start = time.perf_counter()

    def stage(name: str) -> None:
        timings[name] = round(time.perf_counter() - start - sum(timings.values()), 1)
        print(f"[distill] {name} done ({timings[name]:.0f} s)", flush=True)

    print(f"[distill] plan: {json.dumps({**steps, 'sampling': args.sampling})}", flush=True)
    generate_dataset(out / "data" / "train.h5", args.teacher, [args.system], steps["train_frames"],
                     temperatures=TRAIN_TEMPERATURES, seed=args.seed, md_stride=5, **SAMPLING[args.sampling])
    generate_dataset(out / "data" / "test.h5", args.teacher, [args.system], steps["test_frames"],
                     temperatures=[TEST_TEMPERATURE], seed=args.seed + 1000, md_fraction=0.0)
    stage("generate")

    settings = {"time_budget_minutes": steps["train_minutes"], "epochs": None, "seed": args.seed}
    if args.preset:
        settings["preset"] = args.preset
    config = TrainConfig.from_dict(settings)
    trainer = Trainer(str(out / "data" / "train.h5"), str(out / "run"), config, [str(out / "data" / "test.h5")])
    if trainer.progress() < 1.0 or not (out / "run" / "metrics.json").exists():
        trainer.run()
    stage("train")

    model = out / "model.pt"
    meta = export_checkpoint(out / "run", model, dtype=args.dtype)
    stage("export")

    from mlffd.data.systems import BUILTIN_SYSTEMS

    crystal = args.system.split(":")[0] if args.system.split(":")[0].lower() in BUILTIN_SYSTEMS else args.system
    report = validate(str(model), args.teacher, out / "report", system=crystal, data=out / "data" / "test.h5",
                      budget_minutes=steps["validate_minutes"], seed=args.seed)
    stage("validate")
    result = bench(str(model), args.teacher, steps["bench_sizes"], ("ase", "lammps"), str(out / "bench"),
                   long_steps=None, long_steps_ase=None)
    stage("bench")

    _write_deck(out, model, meta["elements"], args.system)
    frames = report["frames"]
    summary = {
        "model": str(model),
        "forces_r2": frames["forces"]["r2"],
        "forces_mae_ev_per_a": frames["forces"]["mae"],
        "forces_rel_mae": frames["forces"]["rel_mae"],
        "energy_mae_ev_per_atom": frames["energy"]["mae_per_atom"],
        "properties": report["table"],
        "goals_met": sum(r["ok"] is True for r in report["table"]),
        "goals_missed": sum(r["ok"] is False for r in report["table"]),
        "teacher_calls_validate": report["teacher_calls"]["calls"],
        "speedup_vs_teacher": result.get("speedup_vs_teacher", {}),
        "report": str(out / "report" / "report.md"),
        "bench": str(out / "bench" / "bench.md"),
        "lammps_deck": str(out / "in.lammps"),
        "stage_seconds": timings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(_summary_text(summary))
    return 0


def _write_deck(out: Path, model: Path, elements: list[str], system: str) -> None:
    from ase.io import write

    from mlffd.data.systems import load_system

    try:
        atoms = load_system(system).images[0].repeat((2, 2, 2))
    except (AttributeError, MLFFDError):
        return
    write(out / "system.data", atoms, format="lammps-data", specorder=elements, masses=True)
    (out / "in.lammps").write_text(lammps_deck(model, elements, system))


def _summary_text(s: dict) -> str:
    from mlffd.validate.properties.report import table_markdown

    speed = ", ".join(f"{n} atoms: {x:.0f}x" for n, x in s["speedup_vs_teacher"].items() if x) or "n/a"
    return "\n".join([
        "",
        "== mlffd distill: summary ==",
        "student vs teacher, property by property (each computed the same way for both):",
        "",
        table_markdown(s["properties"]),
        "",
        f"goals met: {s['goals_met']}, missed: {s['goals_missed']}",
        f"force R^2 vs teacher (held-out, unseen T): {s['forces_r2']:.4f}   "
        f"MAE {s['forces_mae_ev_per_a']:.4f} eV/A ({100 * s['forces_rel_mae']:.1f}% of mean |F|)",
        f"energy MAE: {1000 * s['energy_mae_ev_per_atom']:.2f} meV/atom",
        f"speed-up vs teacher per MD step (ASE): {speed}",
        f"model: {s['model']}   LAMMPS deck: {s['lammps_deck']}",
        f"report: {s['report']}   bench: {s['bench']}",
    ])
