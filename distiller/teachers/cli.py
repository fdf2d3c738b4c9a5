"""`mlffd teachers [--json]`: every teacher, whether it is installed and has weights."""

from __future__ import annotations

import json


def _run(args) -> int:
    from mlffd.teachers.registry import list_teachers

    rows = list_teachers()
    if args.json:
        if not args.elements:
            for r in rows:
                r.pop("elements", None)
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':30s} {'package':11s} {'installed':9s} {'weights':7s} {'elems':5s} {'conserv':7s}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:30s} {r['package']:11s} {'yes' if r['installed'] else 'no':9s} "
            f"{'yes' if r['weights_available'] else 'no':7s} {r['n_elements']:5d} "
            f"{'yes' if r['conservative'] else 'no':7s}  {r['note']}"
        )
        if not r["weights_available"] and r["installed"]:
            print(f"{'':30s} weights: {r['weights']}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("teachers", help="list the teacher force fields and whether they can run here")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--elements", action="store_true", help="with --json: include the element lists")
    p.set_defaults(func=_run)
