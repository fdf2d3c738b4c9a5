"""What a larger student costs per MD step in LAMMPS now (not a test): one point per size variant.

    python benchmarks/preset_cost.py --out benchmarks/results/preset_cost [--natoms 512] [--threads 1]

The cost of the frozen graph does not depend on the weights, so every variant is a randomly
initialised student (seed 0, Si, cutoff 5 A) exported the default way (float32, radial tables and
fused ops) and timed by `mlffd bench` (LAMMPS `pair_style mlffd`, fix nve, 1 thread), each in the
same run as LAMMPS Tersoff on the same structure, so the ratio to Tersoff is side by side.
What a variant buys in fidelity needs training and the property suite (benchmarks/frontier.py,
mlffd validate); this says which variants the physics work can afford.
Writes preset_cost.json and preset_cost.md into --out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from mlffd.export.freeze import freeze
from mlffd.model.student import StudentConfig, StudentPotential
from mlffd.training.config import PRESETS
from mlffd.validate import bench

# name -> StudentConfig overrides of a preset
VARIANTS = {
    "tiny": PRESETS["tiny"],
    "fast (default)": PRESETS["fast"],
    "fast, lmax 3": {**PRESETS["fast"], "lmax": 3},
    "fast, 32 channels": {**PRESETS["fast"], "channels": 32},
    "small (2 layers)": PRESETS["small"],
    "small, lmax 3": {**PRESETS["small"], "lmax": 3},
    "small, 32 channels": {**PRESETS["small"], "channels": 32},
    "medium": PRESETS["medium"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--natoms", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in VARIANTS.items():
            torch.manual_seed(0)
            config = StudentConfig(elements=["Si"], cutoff=5.0, avg_num_neighbors=28.0, atomic_energies=[-5.4],
                                   energy_scale=0.5, **shape)
            path = Path(tmp) / f"model_{len(rows)}.pt"
            freeze(StudentPotential(config), path, dtype="float32")
            result = bench(str(path), None, [args.natoms], ("lammps",), str(Path(tmp) / f"bench_{len(rows)}"),
                           steps=args.steps, repeats=args.repeats, long_steps=0, long_steps_ase=0,
                           threads=args.threads, peers=(), verbose=False)
            by_model = {r["model"]: r for r in result["rows"] if r["engine"] == "lammps"}
            student, tersoff = by_model["student"], by_model.get("classical:tersoff", {})
            us, floor = student.get("us_per_atom_step"), tersoff.get("us_per_atom_step")
            rows.append({"variant": name, **shape, "parameters": sum(p.numel() for p in
                                                                     StudentPotential(config).parameters()),
                         "natoms": student["natoms"], "us_per_atom_step": us, "tersoff_us_per_atom_step": floor,
                         "ratio_to_tersoff": us / floor if us and floor else None})
            print(f"{name:<20} {us:7.2f} us/atom-step  Tersoff {floor:5.2f}  ratio {us / floor:5.2f}", flush=True)
    (out / "preset_cost.json").write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))
    lines = [f"# Student size vs cost per MD step (LAMMPS, {rows[0]['natoms']} Si atoms, {args.threads} thread, "
             "float32, radial tables + fused ops; Tersoff in the same run)", "",
             "`python benchmarks/preset_cost.py --out benchmarks/results/preset_cost`", "",
             "| variant | layers | channels | lmax | parameters | us/atom-step | Tersoff us/atom-step | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['num_interactions']} | {r['channels']} | {r['lmax']} | {r['parameters']} | "
                     f"{r['us_per_atom_step']:.2f} | {r['tersoff_us_per_atom_step']:.2f} | {r['ratio_to_tersoff']:.2f}x |")
    (out / "preset_cost.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
