"""Does the student's uncertainty rise before its MD runs away, and does `fix halt` stop it? (issue 31)

    python benchmarks/uncertainty_runaway.py MODEL.pt --out benchmarks/results/issue31/runaway \
        [--temperature 2000] [--cells 2] [--ps 20] [--seed 0] [--halt 100] [--damp 0.05]

Crystalline Si (the built-in 64-atom cell, hydrostatically relaxed by the student, --cells^3 of
them: 512 atoms at 2) in LAMMPS with `pair_style mlffd`: velocities at 2T (seeded), Langevin at T
(damping time --damp ps), 2 fs steps, the largest per-atom uncertainty (`fix pair ... mlffd
uncertainty 0`, `compute reduce max`) and the temperature every 10 steps, the frames every 100 steps
in a dump with elements (what `mlffd active --trajectory` reads).

1. `watch`: runs until the MD fails as validate judges it (`fix halt ... error continue`): the
   temperature passes RUNAWAY_FACTOR x T (a runaway) or the closest pair comes under validate's
   collapse floor (0.45 x the covalent sum; `compute pair/local dist`), or for --ps. Reports the
   failure step and, for thresholds of 1, 10 and 100x the largest uncertainty of the student's own
   training atoms, the first step above each: how far ahead of the failure the uncertainty said so.
   Plot: runaway.png.
2. `halt`: the same run with `fix halt ... v_umax > H error hard message yes` (H: --halt x that
   training maximum), which must end it with LAMMPS's message before the failure.

Writes runaway.json, runaway.md, runaway.png and watch/prod.lammpstrj into --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

from mlffd.calculator import MLFFDCalculator
from mlffd.data.systems import load_system
from mlffd.lammps_plugin import plugin_path
from mlffd.lammps_plugin.runner import deck_path, lammps_env, lmp_binary, lower_triangular, write_data
from mlffd.relax import relax
from mlffd.validate.properties.crystal import default_min_distance
from mlffd.validate.properties.dynamics import RUNAWAY_FACTOR

THERMO_EVERY = 10
DUMP_EVERY = 100
TIMESTEP_PS = 0.002


def deck(model: Path, workdir: Path, temperature: float, steps: int, seed: int, stop: str, damp: float) -> str:
    return f"""units metal
atom_style atomic
atom_modify map array
read_data data.lmp
plugin load {plugin_path()}
pair_style mlffd
pair_coeff * * {deck_path(model, workdir)} Si
fix unc all pair {THERMO_EVERY} mlffd uncertainty 0
compute umax all reduce max f_unc
compute pairs all pair/local dist
compute dmin all reduce min c_pairs inputs local
variable umax equal c_umax
variable temp equal temp
variable dmin equal c_dmin
thermo_style custom step temp pe c_umax c_dmin
thermo_modify flush yes
thermo {THERMO_EVERY}
dump d all custom {DUMP_EVERY} prod.lammpstrj id element x y z
dump_modify d element Si sort id
timestep {TIMESTEP_PS}
velocity all create {2 * temperature} {seed + 1} dist gaussian mom yes
fix nve all nve
fix heat all langevin {temperature} {temperature} {damp} {seed + 7}
{stop}
run {steps}
"""


def run(model: Path, atoms, workdir: Path, temperature: float, steps: int, seed: int, stop: str, damp: float) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    write_data(atoms, workdir / "data.lmp", ["Si"])
    (workdir / "in.lammps").write_text(deck(model, workdir, temperature, steps, seed, stop, damp))
    proc = subprocess.run([str(lmp_binary()), "-in", "in.lammps", "-log", "log.lammps", "-screen", "none"],
                          cwd=workdir, env=lammps_env(), capture_output=True, text=True, errors="replace")
    log = (workdir / "log.lammps").read_text()
    rows, reading = [], False
    for line in log.splitlines():
        words = line.split()
        if words[:5] == ["Step", "Temp", "PotEng", "c_umax", "c_dmin"]:
            reading = True
            continue
        if reading and len(words) == 5:
            try:
                rows.append([float(w) for w in words])
                continue
            except ValueError:
                pass
        reading = reading and not line.startswith("Loop time")
    lines = (log + proc.stdout + proc.stderr).splitlines()
    halted = [ln.strip() for ln in lines if "Fix halt" in ln]
    # the pair style's own guard (atoms closer than 0.5 A) ends a collapse between two thermo rows
    overlap = [ln.strip() for ln in lines if "atoms overlap" in ln]
    return {"rc": proc.returncode, "rows": np.array(rows).reshape(-1, 5), "halt_message": halted[0] if halted else None,
            "overlap_message": overlap[0] if overlap else None}


def first_step_above(rows: np.ndarray, column: int, value: float) -> int | None:
    above = np.nonzero(rows[:, column] > value)[0]
    return int(rows[above[0], 0]) if len(above) else None


def first_step_below(rows: np.ndarray, column: int, value: float) -> int | None:
    below = np.nonzero(rows[:, column] < value)[0]
    return int(rows[below[0], 0]) if len(below) else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--temperature", type=float, default=2000.0)
    ap.add_argument("--cells", type=int, default=2)
    ap.add_argument("--ps", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--halt", type=float, default=100.0, help="fix halt at this x the training atoms' largest")
    ap.add_argument("--damp", type=float, default=0.05, help="Langevin damping time, ps (validate's production: 1)")
    args = ap.parse_args()
    out, model = Path(args.out), Path(args.model).resolve()
    out.mkdir(parents=True, exist_ok=True)
    calc = MLFFDCalculator(str(model))
    train_max = float(calc.metadata["uncertainty"]["train_quantiles"]["max"])
    crystal = relax(load_system("si").images[0], calc, fmax=1e-3, cell="hydrostatic").atoms
    atoms = lower_triangular(crystal.repeat(args.cells))
    steps = int(round(args.ps / TIMESTEP_PS))
    hot = RUNAWAY_FACTOR * args.temperature
    floor = default_min_distance(atoms.get_chemical_symbols())
    watch = run(model, atoms, out / "watch", args.temperature, steps, args.seed,
                f"fix runaway all halt {THERMO_EVERY} v_temp > {hot:g} error continue message yes\n"
                f"fix collapse all halt {THERMO_EVERY} v_dmin < {floor:g} error continue message yes", args.damp)
    rows = watch["rows"]
    collapse = first_step_below(rows, 4, floor)
    if collapse is None and watch["overlap_message"] and len(rows):
        collapse = int(rows[-1, 0]) + THERMO_EVERY  # at the latest
    failures = {"runaway": first_step_above(rows, 1, hot), "collapse": collapse}
    failed = {kind: step for kind, step in failures.items() if step is not None}
    failure, failure_step = min(failed.items(), key=lambda item: item[1]) if failed else (None, None)
    leads = {}
    for factor in (1, 10, 100):
        step = first_step_above(rows, 3, factor * train_max)
        leads[f"{factor}x"] = {"threshold": factor * train_max, "first_step": step,
                               "steps_before_failure": None if step is None or failure_step is None else failure_step - step}
    threshold = args.halt * train_max
    halt = run(model, atoms, out / "halt", args.temperature, steps, args.seed,
               f"fix stop all halt {THERMO_EVERY} v_umax > {threshold:g} error hard message yes", args.damp)
    result = {
        "model": str(args.model), "atoms": len(atoms), "temperature_K": args.temperature, "seed": args.seed,
        "timestep_ps": TIMESTEP_PS, "steps_asked": steps, "training_atoms_max_uncertainty": train_max,
        "runaway_at_K": hot, "collapse_below_A": floor, "failure": failure, "failure_step": failure_step,
        "closest_pair_A": float(rows[:, 4].min()) if len(rows) else None, "overlap_message": watch["overlap_message"],
        "watch_steps_run": int(rows[-1, 0]) if len(rows) else 0,
        "uncertainty_first_2ps_median": float(np.median(rows[rows[:, 0] <= 1000, 3])) if len(rows) else None,
        "thresholds": leads,
        "halt": {"threshold": threshold, "rc": halt["rc"], "message": halt["halt_message"],
                 "last_step": int(halt["rows"][-1, 0]) if len(halt["rows"]) else None},
        "command": f"python benchmarks/uncertainty_runaway.py {args.model} --out {args.out} --temperature "
                   f"{args.temperature:g} --cells {args.cells} --ps {args.ps:g} --seed {args.seed} --halt {args.halt:g} "
                   f"--damp {args.damp:g}",
    }
    (out / "runaway.json").write_text(json.dumps(result, indent=1))
    plot(rows, train_max, failure_step, threshold, out / "runaway.png")
    outcome = (f"{failure} at step {failure_step}" if failure else f"none in {result['watch_steps_run']} steps")
    lines = [f"# Uncertainty before the MD fails ({len(atoms)} Si atoms, {args.temperature:g} K, LAMMPS)", "",
             f"`{result['command']}`", "",
             f"Training atoms' largest uncertainty: {train_max:.3g}; median of the run's largest over its first "
             f"2 ps: {result['uncertainty_first_2ps_median']:.3g}. Failure (a runaway: T > {hot:g} K; a collapse: "
             f"a pair under {floor:.3g} A): {outcome}; closest pair in the thermo rows {result['closest_pair_A']:.3f} A"
             + (f"; LAMMPS: `{watch['overlap_message']}`" if watch["overlap_message"] else "") + ".",
             "", "| threshold | value | first step above | steps before the failure |", "|---|---|---|---|"]
    for name, lead in leads.items():
        lines.append(f"| {name} training max | {lead['threshold']:.3g} | {lead['first_step']} | "
                     f"{lead['steps_before_failure']} |")
    lines += ["", f"`fix halt` at {threshold:.3g}: return code {halt['rc']}, last thermo step "
              f"{result['halt']['last_step']}, message: `{halt['halt_message']}`", ""]
    (out / "runaway.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def plot(rows: np.ndarray, train_max: float, failure_step: int | None, threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 5))
    t = rows[:, 0] * TIMESTEP_PS
    top.plot(t, rows[:, 1], lw=0.8)
    top.set_ylabel("T (K)")
    bottom.semilogy(t, rows[:, 3], lw=0.8, label="largest per-atom uncertainty")
    bottom.axhline(train_max, color="grey", ls=":", label="training atoms' largest")
    bottom.axhline(threshold, color="red", ls="--", label="fix halt threshold")
    for ax in (top, bottom):
        if failure_step is not None:
            ax.axvline(failure_step * TIMESTEP_PS, color="black", lw=0.6)
    bottom.set_xlabel("time (ps)")
    bottom.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
