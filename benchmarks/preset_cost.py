"""What a larger student costs per MD step in LAMMPS now (not a test): one point per size variant.

    python benchmarks/preset_cost.py --out benchmarks/results/preset_cost [--natoms 512,4096] [--threads 1]
        [--variants "fast (default),small (2 layers)"] [--trained MODEL.pt ...]

The cost of the frozen graph should not depend on the weights, so every variant is a randomly
initialised student (seed 0, Si, cutoff 5 A) exported the default way (float32, radial tables and
fused ops) and timed by `mlffd bench` (LAMMPS `pair_style mlffd`, fix nve, 1 thread), each in the
same run as LAMMPS Tersoff on the same structure, so the ratio to Tersoff is side by side. Trained Si
students (`--trained`, files of `mlffd export`) are timed in the same run, beside the random-weight
variant of their shape: the check of that assumption. What a variant buys in fidelity needs training
and the property suite (benchmarks/frontier.py, mlffd validate); this says which variants the
physics work can afford.
Writes preset_cost.json and preset_cost.md into --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from mlffd.export.contract import read_metadata
from mlffd.export.freeze import freeze
from mlffd.model.registry import build_model
from mlffd.model.student import StudentConfig, StudentPotential
from mlffd.training.config import PRESETS
from mlffd.bench import bench

# name -> StudentConfig overrides of a preset
VARIANTS = {
    "tiny": PRESETS["tiny"],
    "fast (default)": PRESETS["fast"],
    "fast + lmax 3": {**PRESETS["fast"], "lmax": 3},
    "fast + 32 channels": {**PRESETS["fast"], "channels": 32},
    "small (2 layers)": PRESETS["small"],
    "small + lmax 3": {**PRESETS["small"], "lmax": 3},
    "small + 32 channels": {**PRESETS["small"], "channels": 32},
    "medium": PRESETS["medium"],
}


def lammps_cost(path: Path, work: Path, natoms: int, args) -> tuple[int, float, float]:
    """(atoms, student us/atom-step, Tersoff us/atom-step) of one frozen Si student, Tersoff in the same run."""
    result = bench(path, None, [natoms], ("lammps",), work, steps=args.steps, repeats=args.repeats,
                   long_steps=0, long_steps_ase=0, threads=args.threads, peers=(), verbose=False)
    by_model = {r["model"]: r for r in result["rows"] if r["engine"] == "lammps"}
    student, tersoff = by_model["student"], by_model.get("classical:tersoff", {})
    for row in (student, tersoff):
        if row.get("us_per_atom_step") is None:
            raise SystemExit(f"{row.get('model', 'classical:tersoff')} at {natoms} atoms not timed: "
                             f"{row.get('skipped') or row.get('error') or 'no LAMMPS Tersoff row'}")
    return student["natoms"], student["us_per_atom_step"], tersoff["us_per_atom_step"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--natoms", default="512", help="comma-separated sizes (atoms), each in its own LAMMPS run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated subset of the random-weight variants (default: all)")
    ap.add_argument("--trained", nargs="*", default=[], metavar="MODEL",
                    help="trained frozen Si students (mlffd export) measured in the same run")
    args = ap.parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    sizes = [int(n) for n in args.natoms.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            shape = VARIANTS[name]
            torch.manual_seed(0)
            config = StudentConfig(elements=["Si"], cutoff=5.0, avg_num_neighbors=28.0, atomic_energies=[-5.4],
                                   energy_scale=0.5, **shape)
            path = Path(tmp) / f"model_{len(rows)}.pt"
            model = StudentPotential(config)
            freeze(model, path, dtype="float32")
            rows.append({"variant": f"{name} (random weights)", **shape,
                         "parameters": sum(p.numel() for p in model.parameters())})
        for model_path in args.trained:
            meta = read_metadata(model_path)
            config = meta["model_config"]
            rows.append({"variant": f"trained: {model_path}", "path": str(Path(model_path)),
                         **{k: config[k] for k in ("num_interactions", "channels", "lmax")},
                         "parameters": sum(p.numel() for p in build_model(config).parameters())})
        for k, row in enumerate(rows):
            path = Path(row.get("path") or Path(tmp) / f"model_{k}.pt")
            row["cost"] = []
            for size in sizes:
                natoms, us, floor = lammps_cost(path, Path(tmp) / f"bench_{k}_{size}", size, args)
                row["cost"].append({"natoms": natoms, "us_per_atom_step": us, "tersoff_us_per_atom_step": floor,
                                    "ratio_to_tersoff": us / floor})
                print(f"{row['variant']:<40} {natoms:6d} atoms {us:7.2f} us/atom-step  Tersoff {floor:5.2f}  "
                      f"ratio {us / floor:5.2f}", flush=True)
    (out / "preset_cost.json").write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))
    command = "python benchmarks/preset_cost.py " + shlex.join(sys.argv[1:])
    natoms = [c["natoms"] for c in rows[0]["cost"]]
    lines = [f"# Student size vs cost per MD step (LAMMPS, Si, {args.threads} thread, float32, radial tables + "
             "fused ops; Tersoff in the same run)", "", f"`{command}`", "",
             "us per atom-step, and the ratio to Tersoff's of the same run, at " + " and ".join(map(str, natoms))
             + " atoms.", "",
             "| variant | layers | channels | lmax | parameters | "
             + " | ".join(f"{n} atoms | Tersoff | ratio" for n in natoms) + " |",
             "|---|---|---|---|---|" + "---|---|---|" * len(natoms)]
    for r in rows:
        cells = " | ".join(f"{c['us_per_atom_step']:.2f} | {c['tersoff_us_per_atom_step']:.2f} | "
                           f"{c['ratio_to_tersoff']:.2f}x" for c in r["cost"])
        lines.append(f"| {r['variant']} | {r['num_interactions']} | {r['channels']} | {r['lmax']} | "
                     f"{r['parameters']} | {cells} |")
    (out / "preset_cost.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
