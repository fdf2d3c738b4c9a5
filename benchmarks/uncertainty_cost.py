"""What the per-atom uncertainty costs per MD step in LAMMPS (issue 31; not a test).

    python benchmarks/uncertainty_cost.py --out benchmarks/results/issue31 [--natoms 512] [--rounds 2]

One randomly initialised `fast` student (seed 0, Si; the cost of the frozen graph does not depend on
the weights or the statistics) frozen twice the default way (float32, radial tables, fused ops):
without descriptor statistics (the uncertainty off: the last layer's fused node op as before) and
with them (on: the last layer's hidden features through an identity readout, then the energy readout
and the Mahalanobis distance). Each is timed by `mlffd bench` (LAMMPS `pair_style mlffd`, fix nve,
one thread) with LAMMPS Tersoff in the same run, alternating off / on for --rounds rounds.
Writes uncertainty_cost.json and uncertainty_cost.md into --out.
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
from mlffd.bench import bench


def frozen(path: Path, with_uncertainty: bool) -> Path:
    torch.manual_seed(0)
    config = StudentConfig(elements=["Si"], cutoff=5.0, avg_num_neighbors=28.0, atomic_energies=[-5.4],
                           energy_scale=0.5, **PRESETS["fast"])
    model = StudentPotential(config)
    if with_uncertainty:
        hidden = model.interactions[-1].update[0].out_features
        model.set_descriptor_statistics(torch.zeros(hidden), torch.eye(hidden))
    freeze(model, path, dtype="float32")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--natoms", type=int, default=512)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {"off": frozen(Path(tmp) / "off.pt", False), "on": frozen(Path(tmp) / "on.pt", True)}
        for round_ in range(args.rounds):
            for name, path in models.items():
                result = bench(str(path), None, [args.natoms], ("lammps",), str(Path(tmp) / f"b{len(rows)}"),
                               steps=args.steps, repeats=args.repeats, long_steps=0, long_steps_ase=0,
                               threads=1, peers=(), verbose=False)
                by_model = {r["model"]: r for r in result["rows"] if r["engine"] == "lammps"}
                us = by_model["student"]["us_per_atom_step"]
                floor = by_model["classical:tersoff"]["us_per_atom_step"]
                rows.append({"round": round_ + 1, "uncertainty": name, "natoms": by_model["student"]["natoms"],
                             "us_per_atom_step": us, "tersoff_us_per_atom_step": floor, "ratio_to_tersoff": us / floor})
                print(f"round {round_ + 1} {name:<4} {us:6.2f} us/atom-step  Tersoff {floor:5.2f}  "
                      f"ratio {us / floor:5.2f}", flush=True)
    (out / "uncertainty_cost.json").write_text(json.dumps({"rows": rows}, indent=1))
    lines = [f"# Per-atom uncertainty on and off: LAMMPS cost per MD step ({rows[0]['natoms']} Si atoms, 1 thread, "
             "`fast` student, float32, fused ops; Tersoff in the same run)", "",
             "`python benchmarks/uncertainty_cost.py --out benchmarks/results/issue31`", "",
             "| round | uncertainty | us/atom-step | Tersoff us/atom-step | ratio to Tersoff |", "|---|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['uncertainty']} | {r['us_per_atom_step']:.2f} | {r['tersoff_us_per_atom_step']:.2f} | "
              f"{r['ratio_to_tersoff']:.2f}x |" for r in rows]
    mean = {k: sum(r["ratio_to_tersoff"] for r in rows if r["uncertainty"] == k) / args.rounds for k in ("off", "on")}
    lines += ["", f"On against off, ratios to Tersoff averaged over the rounds: {mean['on'] / mean['off']:.3f}x."]
    (out / "uncertainty_cost.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
