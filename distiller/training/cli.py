"""`mlffd train DATA --out RUN_DIR [--config FILE] [--preset P] [--epochs N | --time-budget MIN]`."""

from __future__ import annotations

import json

from mlffd.training.config import PRESETS, TrainConfig


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the e3nn student on a teacher-labelled dataset")
    p.add_argument("data", help="HDF5 dataset written by `mlffd generate`")
    p.add_argument("--out", required=True, help="run folder (re-run the same command to resume)")
    p.add_argument("--config", help="YAML/TOML/JSON file of settings (see config.yaml in any run folder)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="model size preset")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int)
    budget.add_argument("--time-budget", type=float, metavar="MINUTES",
                        help="train for this long instead (the one-off compile of the step comes on top)")
    p.add_argument("--test", action="append", default=[], metavar="DATA", help="held-out dataset(s) to report")
    p.add_argument("--seed", type=int)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def config_from_args(args) -> TrainConfig:
    data = TrainConfig.read(args.config) if args.config else {}
    if args.preset:
        data["preset"] = args.preset
    if args.epochs is not None:
        data["epochs"], data["time_budget_minutes"] = args.epochs, None
    if args.time_budget is not None:
        data["time_budget_minutes"] = args.time_budget
    if args.seed is not None:
        data["seed"] = args.seed
    return TrainConfig.from_dict(data)


def run(args) -> int:
    from mlffd.training.trainer import Trainer

    trainer = Trainer(args.data, args.out, config_from_args(args), args.test)  # refusals before any write
    summary = trainer.run(quiet=args.quiet)
    print(json.dumps(summary, indent=2, allow_nan=False))
    return 0
