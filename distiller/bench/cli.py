"""`mlffd bench` (docs/benchmarks.md)."""

from __future__ import annotations

from mlffd.bench.benchmark import DEFAULTS as B
from mlffd.bench.benchmark import bench
from mlffd.bench.engines import ENGINES
from mlffd.errors import MLFFDError
from mlffd.flags import comma_separated


def register(subparsers) -> None:
    b = subparsers.add_parser(
        "bench", help="time per MD step: student vs teacher vs classical, ASE and LAMMPS",
        description="Real MD steps (ASE velocity Verlet, LAMMPS fix nve), each engine in its own process; "
                    "warm-up excluded, median of repeats. Writes bench.json, bench.md and bench.png into --out.")
    b.add_argument("model", help="frozen student (.pt)")
    b.add_argument("--teacher", default=None, help="teacher name (omit for no teacher rows)")
    b.add_argument("--sizes", default="64,512,4096", help="comma-separated atom counts (default 64,512,4096)")
    b.add_argument("--engines", default=",".join(ENGINES),
                   help=f"one or more of {', '.join(ENGINES)}, comma-separated (default {','.join(ENGINES)})")
    b.add_argument("--steps", type=int, default=B["steps"], help=f"timed steps per repeat (default {B['steps']})")
    b.add_argument("--repeats", type=int, default=B["repeats"], help=f"timed repeats (default {B['repeats']})")
    b.add_argument("--warmup", type=int, default=B["warmup"], help=f"untimed warm-up steps (default {B['warmup']})")
    b.add_argument("--teacher-steps", type=int, default=B["teacher_steps"],
                   help=f"timed teacher steps per repeat (default {B['teacher_steps']})")
    b.add_argument("--teacher-max-atoms", type=int, default=B["teacher_max_atoms"],
                   help=f"skip teacher sizes above this (default {B['teacher_max_atoms']})")
    b.add_argument("--long-steps", type=int, default=B["long_steps"],
                   help=f"LAMMPS steps of the RSS-growth run on the smallest size (default {B['long_steps']}; 0: off)")
    b.add_argument("--long-steps-ase", type=int, default=B["long_steps_ase"],
                   help=f"ASE steps of the RSS-growth run on the smallest size (default {B['long_steps_ase']}; 0: off)")
    b.add_argument("--threads", type=int, default=B["threads"], help="threads per engine (default 1)")
    b.add_argument("--system", default=None, help="unit cell to replicate (default: built-in for the model's elements)")
    b.add_argument("--timestep", type=float, default=1.0, help="fs")
    b.add_argument("--temperature", type=float, default=300.0, help="initial velocities, K")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--timeout", type=float, default=B["timeout"], help="seconds per engine run")
    b.add_argument("--out", required=True, help="output directory")
    b.set_defaults(func=run_bench)


def run_bench(args) -> int:
    sizes = comma_separated(args.sizes, "--sizes", int)
    if min(sizes) < 1:
        raise MLFFDError(f"--sizes needs positive numbers of atoms, got {args.sizes!r}")
    for name in ("steps", "repeats", "teacher_steps", "threads"):
        if getattr(args, name) < 1:
            raise MLFFDError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise MLFFDError(f"--warmup must be >= 0, got {args.warmup}")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    result = bench(
        args.model, args.teacher, sizes, engines, args.out, steps=args.steps, repeats=args.repeats,
        warmup=args.warmup, teacher_steps=args.teacher_steps, teacher_max_atoms=args.teacher_max_atoms,
        long_steps=args.long_steps, long_steps_ase=args.long_steps_ase, threads=args.threads,
        timestep=args.timestep, temperature=args.temperature, seed=args.seed, system=args.system,
        timeout=args.timeout,
    )
    print((open(f"{args.out}/bench.md").read()))
    if not any(r["ms_per_step"] for r in result["rows"]):
        raise MLFFDError("no engine produced a timing (see the notes in bench.md)")
    return 0
