"""`mlffd validate` (docs/validate.md)."""

from __future__ import annotations

import json

from mlffd.flags import comma_separated
from mlffd.errors import MLFFDError


def register(subparsers) -> None:
    from mlffd.validate.properties.suite import DEFAULT_PROPERTIES, PROPERTIES

    p = subparsers.add_parser(
        "validate", help="the teacher's physics, side by side: EOS, elastic constants, phonons, defects, MD",
        description="Compare a frozen student with its teacher property by property, each computed by the same "
                    "code for both: equation of state, elastic constants, phonons, vacancy energies, a surface "
                    "(on request) and MD (stability, RDF, diffusion, forces on the teacher's own frames). The "
                    "teacher's results are cached, so a second student of the same system costs no teacher call. "
                    "Writes report.json, report.md and plots into --report.")
    p.add_argument("model", help="frozen student (.pt)")
    p.add_argument("--teacher", required=True,
                   help="teacher name (e.g. sevennet-0), or mlffd:PATH (another frozen model) or emt")
    p.add_argument("--system", default=None,
                   help="crystal: a built-in (si, cu, sio2, ...), a structure file, or FILE@N for structure N of "
                        "several (default: the built-in for the model's elements)")
    p.add_argument("--properties", default=",".join(DEFAULT_PROPERTIES),
                   help=f"comma-separated, from {','.join(PROPERTIES)} (default {','.join(DEFAULT_PROPERTIES)})")
    p.add_argument("--budget", type=float, default=15.0, metavar="MINUTES",
                   help="wall-time budget on this machine; sizes the MD (default 15)")
    p.add_argument("--report", required=True, help="output directory")
    p.add_argument("--data", default=None, help="held-out labelled HDF5 data set: adds frame errors")
    p.add_argument("--max-frames", type=int, default=None, help="use only the first N frames of --data")
    p.add_argument("--temperatures", default=None,
                   help="MD temperatures, K, comma-separated (default: one inside, one above the training range)")
    p.add_argument("--md-steps", type=int, default=None, help="MD production steps (default: from the budget)")
    p.add_argument("--equilibration-steps", type=int, default=None, help="MD equilibration steps (default: from the budget)")
    p.add_argument("--nve-ps", type=float, default=None,
                   help="ps of student-only NVE after production (default: from the budget)")
    p.add_argument("--surface", default=None, metavar="HKL",
                   help="Miller index of the slab for the surface property, e.g. 111 (default 100, or 001 if not cubic)")
    p.add_argument("--reference-cache", default=None,
                   help="teacher cache file (default $MLFFD_REFERENCE_DIR or ~/.cache/mlffd/reference/TEACHER__SYSTEM.h5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--json", action="store_true", help="print report.json to stdout")
    p.set_defaults(func=run_validate)


def _miller(text: str | None) -> tuple | None:
    if text is None:
        return None
    digits = text.replace(",", "").replace(" ", "")
    if not (len(digits) == 3 and digits.isdigit()) or digits == "000":
        raise MLFFDError(f"--surface takes three digits such as 111 or 100, got {text!r}")
    return tuple(int(d) for d in digits)


def run_validate(args) -> int:
    from mlffd.validate.properties.report import table_markdown
    from mlffd.validate.validation import validate

    if args.budget <= 0:
        raise MLFFDError(f"--budget must be > 0 minutes, got {args.budget}")
    if args.max_frames is not None and args.max_frames < 1:
        raise MLFFDError(f"--max-frames must be at least 1, got {args.max_frames} (omit it to use every frame)")
    for flag, value in (("--md-steps", args.md_steps), ("--equilibration-steps", args.equilibration_steps)):
        if value is not None and value < 1:
            raise MLFFDError(f"{flag} must be >= 1, got {value}")
    temperatures = None if args.temperatures is None else comma_separated(args.temperatures, "--temperatures", unit="K")
    report = validate(
        args.model, args.teacher, args.report, system=args.system, data=args.data,
        properties=args.properties.split(","), budget_minutes=args.budget, temperatures=temperatures,
        production_steps=args.md_steps, equilibration_steps=args.equilibration_steps, nve_ps=args.nve_ps,
        surface=_miller(args.surface), reference_cache=args.reference_cache, max_frames=args.max_frames,
        seed=args.seed, device=args.device, threads=args.threads,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table_markdown(report["table"]))
        calls = report["teacher_calls"]
        print(f"\nteacher calls: {calls['calls']} (cache hits {calls['cache_hits']})   report: {args.report}/report.md")
    return 0
