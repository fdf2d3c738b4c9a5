"""The speed/fidelity frontier: cost per atom per MD step vs force error, one point per variant.

    python benchmarks/frontier.py --train-data si_train.h5 --test-data si_test1200.h5 \
        --out benchmarks/results/frontier --train-epochs 20

Phase 1 trains every variant (skipped when its run folder is complete; resumable). Phase 2, in one
process so the numbers are side by side, exports each variant, measures its held-out force error
and its cost per atom per MD step at `--natoms` through ASE (MLFFDCalculator, fused ops on and
off) and, when the plugin is built, LAMMPS (`pair_style mlffd`), and times the teacher and
LAMMPS Tersoff on the same structure. Writes frontier.json, frontier.md and frontier.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# name -> training config overrides (presets plus variants between them)
VARIANTS = {
    "tiny": {"preset": "tiny"},
    "fast-l1": {"preset": "fast", "lmax": 1},
    "fast": {"preset": "fast"},
    "small": {"preset": "small"},
}


def train_variants(args, names):
    for name in names:
        run = Path(args.out) / "runs" / name
        if (run / "metrics.json").exists():
            print(f"[frontier] {name}: trained already")
            continue
        config = {"epochs": args.train_epochs, "time_budget_minutes": None, **VARIANTS[name]}
        run.mkdir(parents=True, exist_ok=True)
        (run.parent / f"{name}.json").write_text(json.dumps(config))
        cmd = [sys.executable, "-m", "mlffd.cli", "train", args.train_data, "--out", str(run),
               "--config", str(run.parent / f"{name}.json"), "--quiet"]
        print("[frontier]", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def md_cost_ase(calc, atoms, steps: int) -> float:
    """Median wall time of one VelocityVerlet step (s), after warm-up."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    dyn.run(3)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        dyn.run(1)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def lammps_cost(model: str | None, atoms, steps: int, pair: list[str], threads: int) -> float | None:
    """Seconds per step from LAMMPS's own loop timer (warm-up run excluded); None without LAMMPS."""
    import tempfile

    from mlffd.lammps_plugin import is_built, plugin_path
    from mlffd.lammps_plugin.runner import lammps_env, lmp_binary, write_data

    if model is not None and not is_built():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        write_data(atoms, f"{tmp}/data.lmp", ["Si"])
        load = f"plugin load {plugin_path()}\n" if model is not None else ""
        deck = (f"units metal\natom_style atomic\nboundary p p p\nread_data {tmp}/data.lmp\n{load}"
                + "\n".join(pair) + "\nvelocity all create 300 1\nfix 1 all nve\nthermo 1000\n"
                f"run 5\nrun {steps}\n")
        Path(f"{tmp}/in.lmp").write_text(deck)
        out = subprocess.run([str(lmp_binary()), "-in", f"{tmp}/in.lmp", "-log", "none"],
                             capture_output=True, text=True, env=lammps_env(threads), cwd=tmp)
        if out.returncode != 0:
            raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
        loops = [line for line in out.stdout.splitlines() if line.startswith("Loop time of")]
        return float(loops[-1].split()[3]) / steps


def measure(args, names):
    import torch

    from ase.build import bulk

    from mlffd import MLFFDCalculator
    from mlffd.data.dataset import open_dataset
    from mlffd.training.metrics import force_metrics
    from mlffd.export.freeze import export_checkpoint

    torch.set_num_threads(args.threads)
    cells = round((args.natoms / 8) ** (1 / 3))
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((cells, cells, cells))
    atoms.rattle(0.05, seed=1)
    test = open_dataset(args.test_data)
    test_atoms = [test.to_atoms(i) for i in range(len(test))]
    rows = []
    for name in names:
        run = Path(args.out) / "runs" / name
        model = str(Path(args.out) / f"{name}.pt")
        meta = export_checkpoint(run, model, dtype=args.dtype, use_ops=True)
        export_checkpoint(run, model.replace(".pt", "-ref.pt"), dtype=args.dtype, use_ops=False)
        calc = MLFFDCalculator(model)
        pred, ref = [], []
        for frame in test_atoms:
            pred.append(calc.get_forces(frame.copy()))
            ref.append(frame.get_forces())
        fidelity = force_metrics(np.concatenate(pred), np.concatenate(ref))
        ase_s = md_cost_ase(calc, atoms, args.steps)
        ase_ref_s = md_cost_ase(MLFFDCalculator(model.replace(".pt", "-ref.pt")), atoms, args.steps)
        lmp_s = lammps_cost(model, atoms, args.steps * 4, ["pair_style mlffd", f"pair_coeff * * {model} Si"],
                            args.threads)
        row = {"variant": name, "n_parameters": meta["n_parameters"], **meta["model_config"],
               "force_r2": fidelity["r2"], "force_mae": fidelity["mae"], "force_rel_mae": fidelity["rel_mae"],
               "ase_us_per_atom_step": ase_s / len(atoms) * 1e6,
               "ase_reference_ops_us_per_atom_step": ase_ref_s / len(atoms) * 1e6,
               "lammps_us_per_atom_step": None if lmp_s is None else lmp_s / len(atoms) * 1e6}
        row.pop("atomic_energies", None)
        row.pop("extra", None)
        rows.append(row)
        print("[frontier]", json.dumps(row), flush=True)
    from mlffd.teachers.registry import load_teacher

    teacher_s = md_cost_ase(load_teacher("sevennet-0"), atoms, 2)
    from mlffd.lammps_plugin.runner import lammps_dir

    potential = lammps_dir() / "share" / "lammps" / "potentials" / "Si.tersoff"
    tersoff_s = lammps_cost(None, atoms, 200, ["pair_style tersoff", f"pair_coeff * * {potential} Si"], 1)
    reference = {"natoms": len(atoms), "threads": args.threads, "dtype": args.dtype,
                 "teacher_us_per_atom_step": teacher_s / len(atoms) * 1e6,
                 "tersoff_us_per_atom_step": None if tersoff_s is None else tersoff_s / len(atoms) * 1e6}
    return rows, reference


def write_report(out: Path, rows, reference):
    (out / "frontier.json").write_text(json.dumps({"rows": rows, "reference": reference}, indent=2))
    lines = [f"# Speed/fidelity frontier (Si, {reference['natoms']} atoms, {reference['threads']} threads, "
             f"{reference['dtype']})", "",
             "Cost per atom per MD step (microseconds, median over steps) and held-out force error vs the "
             "teacher. Generated by `benchmarks/frontier.py`; all rows measured in one run.", "",
             "| variant | layers | channels | lmax | params | force R^2 | force MAE (eV/A) | rel. MAE | "
             "LAMMPS us | ASE us (fused ops) | ASE us (reference) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['variant']} | {r['num_interactions']} | {r['channels']} | {r['lmax']} | {r['n_parameters']} "
                     f"| {r['force_r2']:.4f} | {r['force_mae']:.4f} | {100 * r['force_rel_mae']:.1f}% "
                     f"| {fmt(r['lammps_us_per_atom_step'])} | {fmt(r['ase_us_per_atom_step'])} "
                     f"| {fmt(r['ase_reference_ops_us_per_atom_step'])} |")
    lines += ["", f"Teacher (SevenNet-0, ASE): {fmt(reference['teacher_us_per_atom_step'])} us per atom-step; "
              f"LAMMPS Tersoff: {fmt(reference['tersoff_us_per_atom_step'])} us per atom-step.", ""]
    (out / "frontier.md").write_text("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, marker in [("lammps_us_per_atom_step", "LAMMPS", "o"), ("ase_us_per_atom_step", "ASE", "s")]:
        pts = [(r[key], r["force_mae"], r["variant"]) for r in rows if r[key] is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=f"student via {label}")
            for x, y, name in (pts if label == "LAMMPS" else []):
                ax.annotate(name, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    if reference["teacher_us_per_atom_step"]:
        ax.axvline(reference["teacher_us_per_atom_step"], color="r", ls="--", label="teacher (SevenNet-0)")
    if reference["tersoff_us_per_atom_step"]:
        ax.axvline(reference["tersoff_us_per_atom_step"], color="k", ls=":", label="Tersoff (LAMMPS)")
    ax.set_xscale("log")
    ax.set_xlabel("cost per atom per MD step (us)")
    ax.set_ylabel("held-out force MAE vs teacher (eV/Å)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "frontier.png", dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-data", required=True)
    parser.add_argument("--test-data", required=True)
    parser.add_argument("--out", default=str(HERE / "results" / "frontier"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--train-epochs", type=int, default=20, help="same epochs for every variant")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--natoms", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    names = args.variants.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.skip_train:
        train_variants(args, names)
    if args.train_only:
        return
    rows, reference = measure(args, names)
    report_dir = HERE / "results"
    write_report(report_dir, rows, reference)
    print((report_dir / "frontier.md").read_text())


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
