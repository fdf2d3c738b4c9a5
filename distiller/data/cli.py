"""`mlffd generate` and `mlffd data export|import`."""

from __future__ import annotations

import json
import math

from mlffd.errors import MLFFDError
from mlffd.flags import comma_separated


def _teacher_options(pairs) -> dict:
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise MLFFDError(f"--teacher-option must be KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def _supercell_width(value: float | None) -> float | None:
    """--supercell-width: unset, the default student's cutoff; 0, structures as given."""
    from mlffd.training.config import TrainConfig

    if value is None:
        return TrainConfig().cutoff
    if not math.isfinite(value) or value < 0:
        raise MLFFDError(f"--supercell-width must be a width in A >= 0 (0: structures as given), got {value}")
    return value or None


def _generate(args) -> int:
    from mlffd.data.generate import generate_dataset

    for flag, value in (("--frames", args.frames), ("--md-stride", args.md_stride)):
        if value < 1:
            raise MLFFDError(f"{flag} must be at least 1, got {value}")
    options = _teacher_options(args.teacher_option)
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    generate_dataset(
        out=args.out,
        teacher=args.teacher,
        systems=args.system,
        frames=args.frames,
        temperatures=comma_separated(args.temperatures, "--temperatures", unit="K"),
        seed=args.seed,
        md_fraction=args.md_fraction,
        md_stride=args.md_stride,
        vacancy_fraction=args.vacancy_fraction,
        pair_fraction=args.pair_fraction,
        fractions={"volume": args.volume_fraction, "elastic": args.elastic_fraction,
                   "interstitial": args.interstitial_fraction, "relaxed_strain": args.relaxed_strain_fraction,
                   "relaxed_vacancy": args.relaxed_vacancy_fraction, "vacancy_md": args.vacancy_md_fraction},
        relax=args.relax,
        supercell_width=_supercell_width(args.supercell_width),
        device=args.device,
        teacher_options=options,
        progress=not args.no_progress,
    )
    return 0


def _export(args) -> int:
    from mlffd.data.extxyz import export_extxyz

    n = export_extxyz(args.dataset, args.out)
    print(f"exported {n} frames to {args.out}")
    return 0


def _import(args) -> int:
    from mlffd.data.extxyz import import_extxyz

    n = import_extxyz(args.structures, args.out, teacher_name=args.teacher_name,
                      teacher_version=args.teacher_version)
    print(f"imported {n} frames into {args.out}")
    return 0


def _summary(args) -> int:
    from mlffd.data.dataset import summarize_dataset

    print(json.dumps(summarize_dataset(args.dataset), indent=2))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="sample structures, label them with a teacher, append them to an HDF5 dataset (resumable)",
    )
    p.add_argument("--teacher", default="sevennet-0", help="teacher name (see `mlffd teachers`); default sevennet-0")
    p.add_argument("--system", action="append", required=True,
                   help="built-in system (si, cu, sio2, ge, al, licoo2; optional supercell like si:1x1x1) or a "
                        "structure file; repeat for several")
    p.add_argument("--frames", type=int, required=True, help="total number of frames of the plan")
    p.add_argument("--out", required=True, help="output HDF5 dataset (created or resumed)")
    p.add_argument("--temperatures", default="300,900,1500", help="comma-separated K (default 300,900,1500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--md-fraction", type=float, default=0.2, help="share of frames from teacher MD (default 0.2)")
    p.add_argument("--md-stride", type=int, default=10, help="MD steps between kept frames (default 10)")
    p.add_argument("--vacancy-fraction", type=float, default=0.0, help="share of single-vacancy frames (default 0)")
    p.add_argument("--volume-fraction", type=float, default=0.0,
                   help="share of isotropically scaled cells, +-10 %% volume (the EOS; default 0)")
    p.add_argument("--elastic-fraction", type=float, default=0.0,
                   help="share of single-component strains up to 3 %% normal / 5 %% shear, unrattled (default 0)")
    p.add_argument("--interstitial-fraction", type=float, default=0.0,
                   help="share of frames with one extra atom at the emptiest spot (default 0)")
    p.add_argument("--relaxed-strain-fraction", type=float, default=0.0,
                   help="share of strained cells (one component, or the volume by up to 6 %%) whose ions the "
                        "teacher relaxes: relaxed-ion elastic and EOS labels, 10-100 teacher calls each (default 0)")
    p.add_argument("--relaxed-vacancy-fraction", type=float, default=0.0,
                   help="share of single-vacancy cells whose ions the teacher relaxes: the relaxed vacancy that "
                        "E_vac measures, 10-100 teacher calls each (default 0)")
    p.add_argument("--vacancy-md-fraction", type=float, default=0.0,
                   help="share of frames from teacher MD with one atom removed, a chain per element and "
                        "temperature: vacancy hops (default 0)")
    p.add_argument("--pair-fraction", type=float, default=0.0,
                   help="share of frames in displaced pairs (teacher Hessian-vector data, default 0)")
    p.add_argument("--supercell-width", type=float, default=None, metavar="A",
                   help="repeat structures read from a file until every periodic width is at least this "
                        "(default: the student's default cutoff, 5 A: no atom sees its own image; 0: as given; "
                        "built-ins keep their supercell)")
    p.add_argument("--relax", action="store_true",
                   help="sample around each structure relaxed by the teacher (ions, and the cell when periodic), "
                        "not around the structure as given")
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", help="local checkpoint for an Orb teacher")
    p.add_argument("--teacher-option", action="append", metavar="KEY=VALUE",
                   help="extra teacher option (e.g. precision=float64, model_path=...)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_generate)

    d = subparsers.add_parser("data", help="dataset utilities: export/import extxyz, summary")
    sub = d.add_subparsers(dest="data_command", required=True)
    e = sub.add_parser("export", help="write a dataset's frames to extended XYZ")
    e.add_argument("dataset")
    e.add_argument("out")
    e.set_defaults(func=_export)
    i = sub.add_parser("import", help="append labelled frames (energy+forces) from extxyz to a dataset")
    i.add_argument("structures")
    i.add_argument("out")
    i.add_argument("--teacher-name", help="teacher recorded in a new dataset (default: from the file, else 'external')")
    i.add_argument("--teacher-version")
    i.set_defaults(func=_import)
    s = sub.add_parser("summary", help="frames, elements, label statistics (JSON)")
    s.add_argument("dataset")
    s.set_defaults(func=_summary)
