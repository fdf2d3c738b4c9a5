"""NVE energy drift in LAMMPS of the same checkpoint exported two ways (not a test).

    python benchmarks/nve_drift.py RUN_DIR --out benchmarks/results/nve_drift [--steps 2000]

RUN_DIR is a training run (`mlffd train` / `mlffd distill`'s `run/`). It is exported float32 with
the radial tables and fused ops (the default) and with `--no-ops` (the radial network), and each
runs the same deck: 512-atom Si diamond, velocities at 2 x 600 K (seeded), fix nve, dt 1 fs. The
drift is the slope of a linear fit of the total energy per atom against time; the fluctuation is
the standard deviation of the total energy per atom. Writes nve_drift.json and nve_drift.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from ase.build import bulk

from mlffd.export.freeze import export_checkpoint
from mlffd.lammps_plugin import plugin_dir
from mlffd.lammps_plugin.runner import lammps_env, lmp_binary, write_data

DECK = """units metal
atom_style atomic
boundary p p p
read_data data.lmp
pair_style mlffd
pair_coeff * * {model} Si
velocity all create 1200.0 4928459 mom yes rot yes
timestep 0.001
fix nve all nve
thermo_style custom step time temp pe etotal
thermo_modify format float %.12g
thermo {every}
run {steps}
"""


def drift(workdir: Path, model: Path, steps: int, every: int) -> dict:
    (workdir / "in.nve").write_text(DECK.format(model=model, steps=steps, every=every))
    proc = subprocess.run([str(lmp_binary()), "-in", "in.nve", "-log", "log.lammps", "-screen", "none"], cwd=workdir,
                          env=lammps_env(1, plugin_dir()), capture_output=True, text=True)
    log = (workdir / "log.lammps").read_text() if (workdir / "log.lammps").exists() else ""
    if proc.returncode != 0:
        raise SystemExit(f"LAMMPS failed in {workdir}:\n{log[-2000:]}\n{proc.stderr[-2000:]}")
    lines = log.splitlines()
    start = next(k for k, ln in enumerate(lines) if ln.split()[:2] == ["Step", "Time"]) + 1
    table = []
    for ln in lines[start:]:
        parts = ln.split()
        if len(parts) != 5 or not parts[0].isdigit():
            break
        table.append([float(v) for v in parts])
    t_ps, temp, _, etot = (np.array(c) for c in zip(*[(r[1], r[2], r[3], r[4]) for r in table]))
    n = 512
    slope, _ = np.polyfit(t_ps - t_ps[0], etot / n, 1)
    return {"drift_ev_per_atom_per_ps": float(slope), "etot_std_ev_per_atom": float(np.std(etot / n)),
            "mean_temperature_k": float(temp.mean()), "duration_ps": float(t_ps[-1] - t_ps[0]), "records": len(t_ps)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_data(bulk("Si", "diamond", 5.431, cubic=True).repeat(4), tmp / "data.lmp", ["Si"])
        for name, use_ops in (("radial tables + fused ops (default)", True), ("radial network (--no-ops)", False)):
            model = tmp / f"model_{int(use_ops)}.pt"
            export_checkpoint(args.run, model, dtype="float32", use_ops=use_ops)
            rows[name] = drift(tmp, model, args.steps, every=10)
            print(name, rows[name], flush=True)
    (out / "nve_drift.json").write_text(json.dumps({"run": args.run, "steps": args.steps, "rows": rows}, indent=1))
    lines = ["# NVE drift, LAMMPS, 512 Si atoms, float32, dt 1 fs, from 1200 K velocities", "",
             f"`python benchmarks/nve_drift.py {args.run} --out {args.out} --steps {args.steps}`", "",
             "| export | drift (eV/atom/ps) | std of E_total (eV/atom) | mean T (K) | duration (ps) |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['drift_ev_per_atom_per_ps']:.2e} | {r['etot_std_ev_per_atom']:.2e} | "
                     f"{r['mean_temperature_k']:.0f} | {r['duration_ps']:.1f} |")
    (out / "nve_drift.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
