"""Cost per atom-step in LAMMPS against system size, 1 thread / 2 threads / `mpirun -np 2` (not a test).

    python benchmarks/lammps_scaling.py MODEL.pt --out benchmarks/results/scaling [--sizes 512,4096,32768]

For each size (Si diamond supercells) and each parallel layout, the student (`pair_style mlffd`)
and Tersoff run the same deck one after the other in this one run: velocities at 300 K, fix nve,
dt 1 fs, `--warmup` steps, then `--steps` timed steps (LAMMPS's own "Loop time" of that run, which
excludes set-up). Writes scaling.json, scaling.md and scaling.png (us per atom-step against atoms).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

from ase.build import bulk

from mlffd.export.contract import read_metadata
from mlffd.lammps_plugin import plugin_dir
from mlffd.lammps_plugin.runner import lammps_dir, lammps_env, lmp_binary, mpirun_binary, write_data

LAYOUTS = {"1 thread": (1, 1), "2 threads": (1, 2), "mpirun -np 2": (2, 1)}  # name -> (ranks, threads)
LOOP = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")


def deck(pair_lines: str, steps: int, warmup: int) -> str:
    return f"""units metal
atom_style atomic
boundary p p p
read_data data.lmp
{pair_lines}
velocity all create 300.0 4928459 mom yes rot yes
timestep 0.001
fix nve all nve
thermo 1000
run {warmup}
run {steps}
"""


def time_run(workdir: Path, pair_lines: str, ranks: int, threads: int, steps: int, warmup: int) -> float:
    """us per atom-step of the timed run."""
    (workdir / "in.bench").write_text(deck(pair_lines, steps, warmup))
    cmd = [str(lmp_binary()), "-in", "in.bench", "-log", "log.lammps", "-screen", "none"]
    if ranks > 1:
        cmd = [mpirun_binary(), "-np", str(ranks)] + cmd
    proc = subprocess.run(cmd, cwd=workdir, env=lammps_env(threads, plugin_dir()), capture_output=True, text=True)
    log = (workdir / "log.lammps").read_text() if (workdir / "log.lammps").exists() else ""
    loops = LOOP.findall(log)
    if proc.returncode != 0 or len(loops) < 2:
        raise SystemExit(f"LAMMPS failed in {workdir} (rc {proc.returncode}):\n{log[-2000:]}\n{proc.stderr[-2000:]}")
    seconds, _, n_steps, n_atoms = loops[-1]
    return float(seconds) * 1e6 / (int(n_steps) * int(n_atoms))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="512,4096,32768")
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: ~2e6 atom-steps, 10-200)")
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    model = Path(args.model).resolve()
    elements = read_metadata(str(model))["elements"]
    if elements != ["Si"]:
        raise SystemExit(f"this benchmark is for Si students (Tersoff beside them); {model} has {elements}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tersoff = lammps_dir() / "share" / "lammps" / "potentials" / "Si.tersoff"
    models = {"student": f"pair_style mlffd\npair_coeff * * {model} Si",
              "Tersoff": f"pair_style tersoff\npair_coeff * * {tersoff} Si"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            reps = round((n / 8) ** (1 / 3))
            atoms = bulk("Si", "diamond", 5.431, cubic=True).repeat(reps)
            work = Path(tmp) / str(len(atoms))
            work.mkdir()
            write_data(atoms, work / "data.lmp", ["Si"])
            steps = args.steps or int(min(200, max(10, 2e6 / len(atoms))))
            for layout in args.layouts.split(","):
                ranks, threads = LAYOUTS[layout]
                for name, pair_lines in models.items():
                    us = time_run(work, pair_lines, ranks, threads, steps, args.warmup)
                    rows.append({"natoms": len(atoms), "layout": layout, "model": name, "steps": steps,
                                 "us_per_atom_step": us})
                    print(f"{len(atoms):6d} atoms  {layout:<13} {name:<8} {us:7.2f} us/atom-step", flush=True)
    (out / "scaling.json").write_text(json.dumps({"model": str(model), "rows": rows}, indent=1))
    sizes = sorted({r["natoms"] for r in rows})
    layouts = [lo for lo in LAYOUTS if any(r["layout"] == lo for r in rows)]
    cost = {(r["natoms"], r["layout"], r["model"]): r["us_per_atom_step"] for r in rows}
    lines = ["# LAMMPS cost per atom-step against size (Si; student and Tersoff in one run)", "",
             f"`python benchmarks/lammps_scaling.py {args.model} --out {args.out} --sizes {args.sizes}`", "",
             "| atoms | " + " | ".join(f"student {lo} | Tersoff {lo} | ratio {lo}" for lo in layouts) + " |",
             "|---|" + "---|---|---|" * len(layouts)]
    for n in sizes:
        cells = []
        for lo in layouts:
            s, t = cost[(n, lo, "student")], cost[(n, lo, "Tersoff")]
            cells += [f"{s:.2f}", f"{t:.2f}", f"{s / t:.2f}x"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for lo in layouts:
        for name, style in (("student", "-o"), ("Tersoff", "--s")):
            ax.plot(sizes, [cost[(n, lo, name)] for n in sizes], style, label=f"{name}, {lo}")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("atoms")
    ax.set_ylabel("wall us per atom-step")
    ax.set_title("LAMMPS, Si: cost per atom-step against size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
