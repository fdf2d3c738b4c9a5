"""MD cost per step: a student against its teacher and the classical floor (docs/benchmarks.md).

With a trained model:

    python benchmarks/bench_md.py --model model.pt --teacher sevennet-0 --out benchmarks/results/md

Without one, `--preset NAME` freezes a student of that training preset with RANDOM weights: its cost
per step is the cost of the architecture (weights do not change the work), its physics is noise, so
such runs measure speed only:

    python benchmarks/bench_md.py --preset fast --teacher sevennet-0 --sizes 64,512,4096

Everything else is `mlffd bench` (same options, same outputs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def random_student(preset: str, elements: list[str], path: Path, dtype: str, use_ops: bool | None) -> Path:
    """A frozen student of a training preset with random weights (speed measurements only)."""
    import torch

    from mlffd.model.student import StudentConfig, StudentPotential
    from mlffd.training.config import TrainConfig
    from mlffd.export.freeze import freeze

    settings = TrainConfig(preset=preset).model_settings()
    torch.manual_seed(0)
    config = StudentConfig(elements=list(elements), avg_num_neighbors=16.0,
                           atomic_energies=[-5.0] * len(elements), energy_scale=0.5, **settings)
    model = StudentPotential(config)
    if use_ops is None:  # fused ops when the library builds here, reference modules otherwise
        from mlffd.export import ops

        use_ops = ops.available()
    freeze(model, path, dtype=dtype, use_ops=use_ops,
           teacher={"name": "random", "version": f"untrained preset {preset} (speed only)"})
    print(f"bench_md: random-weight student, preset {preset} {settings}, {dtype}, "
          f"{'fused ops' if use_ops else 'reference e3nn'} -> {path}", file=sys.stderr)
    return path


def main(argv=None) -> int:
    from mlffd.bench.benchmark import DEFAULTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="frozen student (.pt)")
    src.add_argument("--preset", help="freeze a RANDOM-weight student of this preset (tiny, fast, small, medium)")
    p.add_argument("--elements", default="Si", help="elements of the --preset student (default Si)")
    p.add_argument("--dtype", default="float32", help="dtype of the --preset student (default float32)")
    p.add_argument("--ops", choices=["auto", "yes", "no"], default="auto", help="fused ops in the --preset student")
    p.add_argument("--teacher", default="sevennet-0", help="teacher name, or 'none'")
    p.add_argument("--sizes", default="64,512,4096")
    p.add_argument("--engines", default="ase,lammps")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--repeats", type=int, default=DEFAULTS["repeats"])
    p.add_argument("--warmup", type=int, default=DEFAULTS["warmup"])
    p.add_argument("--teacher-steps", type=int, default=DEFAULTS["teacher_steps"])
    p.add_argument("--teacher-max-atoms", type=int, default=DEFAULTS["teacher_max_atoms"])
    p.add_argument("--long-steps", type=int, default=DEFAULTS["long_steps"])
    p.add_argument("--long-steps-ase", type=int, default=DEFAULTS["long_steps_ase"])
    p.add_argument("--threads", type=int, default=DEFAULTS["threads"])
    p.add_argument("--system", default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "md"))
    args = p.parse_args(argv)

    from mlffd.errors import MLFFDError
    from mlffd.bench import bench

    try:
        if args.preset:
            tmp = Path(tempfile.mkdtemp(prefix="mlffd_bench_md_"))
            use_ops = {"auto": None, "yes": True, "no": False}[args.ops]
            model = random_student(args.preset, args.elements.split(","), tmp / f"random_{args.preset}.pt",
                                   args.dtype, use_ops)
        else:
            model = Path(args.model)
        bench(model, None if args.teacher == "none" else args.teacher, [int(n) for n in args.sizes.split(",")],
              args.engines.split(","), args.out,
              steps=args.steps, repeats=args.repeats, warmup=args.warmup, teacher_steps=args.teacher_steps,
              teacher_max_atoms=args.teacher_max_atoms, long_steps=args.long_steps,
              long_steps_ase=args.long_steps_ase, threads=args.threads, system=args.system)
    except MLFFDError as exc:
        print(f"bench_md: error: {exc}", file=sys.stderr)
        return 2
    print((Path(args.out) / "bench.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
