"""Per-step latency of MLFFDCalculator with and without the custom ops, and of the teacher, in one run.

    python benchmarks/ase_custom_ops.py RUN_DIR_OR_CHECKPOINT --sizes 64,512,4096 --teacher-max-atoms 512

Exports the checkpoint twice (fused custom ops / pure-PyTorch reference kernels), then times
VelocityVerlet steps on Si diamond supercells (median of steps after warm-up). Writes
benchmarks/results/ase_custom_ops.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="run folder or checkpoint of a trained Si student")
    parser.add_argument("--sizes", default="64,512,4096")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--teacher", default="sevennet-0")
    parser.add_argument("--teacher-max-atoms", type=int, default=512)
    args = parser.parse_args()

    import torch
    from ase.build import bulk

    from mlffd import MLFFDCalculator
    from mlffd.teachers.registry import load_teacher
    from mlffd.export.freeze import export_checkpoint
    from frontier import md_cost_ase

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fused, reference = f"{tmp}/fused.pt", f"{tmp}/reference.pt"
        export_checkpoint(args.source, fused, dtype=args.dtype, use_ops=True)
        export_checkpoint(args.source, reference, dtype=args.dtype, use_ops=False)
        calculators = {"student (custom ops)": MLFFDCalculator(fused),
                       "student (reference kernels)": MLFFDCalculator(reference)}
        teacher = load_teacher(args.teacher)
        for n in [int(s) for s in args.sizes.split(",")]:
            cells = round((n / 8) ** (1 / 3))
            atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((cells, cells, cells))
            atoms.rattle(0.05, seed=1)
            row = {"natoms": len(atoms)}
            for name, calc in calculators.items():
                row[name] = md_cost_ase(calc, atoms, args.steps) * 1e3
            row["teacher"] = md_cost_ase(teacher, atoms, 2) * 1e3 if len(atoms) <= args.teacher_max_atoms else None
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = HERE / "results"
    (out / "ase_custom_ops.json").write_text(json.dumps({"threads": args.threads, "dtype": args.dtype, "rows": rows},
                                                        indent=2))
    lines = [f"# ASE calculator: custom ops vs reference kernels vs teacher ({args.dtype}, {args.threads} threads)",
             "", "Milliseconds per VelocityVerlet step (median), one run of `benchmarks/ase_custom_ops.py`.", "",
             "| atoms | custom ops | reference kernels | gain | teacher (SevenNet-0) | speed-up vs teacher |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        fused, ref, teach = r["student (custom ops)"], r["student (reference kernels)"], r["teacher"]
        lines.append(f"| {r['natoms']} | {fused:.2f} | {ref:.2f} | {ref / fused:.2f}x | "
                     f"{'skipped' if teach is None else f'{teach:.0f}'} | "
                     f"{'' if teach is None else f'{teach / fused:.0f}x'} |")
    (out / "ase_custom_ops.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
