"""`mlffd validate` and `mlffd bench` (docs/validate.md, docs/benchmarks.md)."""

from __future__ import annotations

import json

from distiller.errors import MLFFDError


def register(subparsers) -> None:
    from distiller.validate.benchmark import DEFAULTS as B
    from distiller.validate.validation import DEFAULTS as V

    p = subparsers.add_parser(
        "validate", help="errors on held-out frames, MD stability, NVE drift and RDF vs the teacher",
        description="Compare a frozen student with its teacher: force/energy/stress errors on a labelled "
                    "data set, then short MD of both (Langevin; NVE for the student). Writes report.json, "
                    "report.md and plots into --report.")
    p.add_argument("model", help="frozen student (.pt)")
    p.add_argument("--teacher", required=True,
                   help="teacher name (e.g. sevennet-0), or mlffd:PATH (another frozen model) or ase:emt")
    p.add_argument("--data", required=True, help="labelled HDF5 data set (held-out frames)")
    p.add_argument("--report", required=True, help="output directory")
    p.add_argument("--md-steps", type=int, default=V["md_steps"],
                   help=f"student Langevin steps (default {V['md_steps']}; 0 skips MD)")
    p.add_argument("--nve-steps", type=int, default=None, help="student NVE steps after Langevin (default: --md-steps)")
    p.add_argument("--teacher-md-steps", type=int, default=V["teacher_md_steps"],
                   help=f"teacher Langevin steps (default {V['teacher_md_steps']}, at most --md-steps; "
                        "SevenNet-0 takes ~0.55 s per step for 64 atoms)")
    p.add_argument("--temperature", type=float, default=V["temperature"], help="K (default 300)")
    p.add_argument("--timestep", type=float, default=V["timestep"], help="fs (default 1.0)")
    p.add_argument("--seed", type=int, default=V["seed"])
    p.add_argument("--start", default="data",
                   help="MD start: 'data' (first frame, default), a built-in system (si, cu:3x3x3) or a file")
    p.add_argument("--min-distance", type=float, default=None,
                   help="stability floor in A (default 0.45 x the smallest sum of covalent radii: 1.0 A for Si)")
    p.add_argument("--max-frames", type=int, default=None, help="use only the first N frames of --data")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--json", action="store_true", help="print report.json to stdout")
    p.set_defaults(func=run_validate)

    b = subparsers.add_parser(
        "bench", help="time per MD step: student vs teacher vs classical, ASE and LAMMPS",
        description="Real MD steps (ASE velocity Verlet, LAMMPS fix nve), each engine in its own process; "
                    "warm-up excluded, median of repeats. Writes bench.json, bench.md and bench.png into --out.")
    b.add_argument("model", help="frozen student (.pt)")
    b.add_argument("--teacher", default=None, help="teacher name (omit for no teacher rows)")
    b.add_argument("--sizes", default="64,512,4096", help="comma-separated atom counts (default 64,512,4096)")
    b.add_argument("--engines", default="ase,lammps", help="ase, lammps or both (default ase,lammps)")
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


def run_validate(args) -> int:
    from distiller.validate.validation import validate

    report = validate(
        args.model, args.teacher, args.data, args.report, md_steps=args.md_steps, nve_steps=args.nve_steps,
        teacher_md_steps=args.teacher_md_steps, temperature=args.temperature, timestep=args.timestep,
        seed=args.seed, start=args.start, min_distance=args.min_distance, max_frames=args.max_frames,
        device=args.device, threads=args.threads,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        f, e, s, n, r, m = (report[k] for k in ("forces", "energy", "stress", "nve", "rdf", "md"))

        def fmt(v, spec=".4g"):
            return "n/a" if v is None else format(v, spec)

        print(f"forces   MAE {fmt(f['mae'])} eV/A  RMSE {fmt(f['rmse'])} eV/A  R^2 {fmt(f['r2'], '.5f')}  "
              f"rel MAE {fmt(f['rel_mae'])}")
        print(f"energy   MAE {fmt(e['mae_per_atom'])} eV/atom   stress MAE {fmt(s['mae'])} eV/A^3")
        print(f"MD       stable {m['stable']}  NVE drift {fmt(n['drift_ev_per_atom_per_ps'])} eV/atom/ps  "
              f"RDF max |diff| {fmt(r['max_abs_diff'])}")
        print(f"report   {args.report}/report.md")
    return 0


def run_bench(args) -> int:
    from distiller.validate.benchmark import bench

    result = bench(
        args.model, args.teacher, args.sizes, args.engines, args.out, steps=args.steps, repeats=args.repeats,
        warmup=args.warmup, teacher_steps=args.teacher_steps, teacher_max_atoms=args.teacher_max_atoms,
        long_steps=args.long_steps, long_steps_ase=args.long_steps_ase, threads=args.threads,
        timestep=args.timestep, temperature=args.temperature, seed=args.seed, system=args.system,
        timeout=args.timeout,
    )
    print((open(f"{args.out}/bench.md").read()))
    if not any(r["ms_per_step"] for r in result["rows"]):
        raise MLFFDError("no engine produced a timing (see the notes in bench.md)")
    return 0
