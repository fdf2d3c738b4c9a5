"""`mlffd info FILE [--json]`: summarise a dataset (.h5) or a frozen model (.pt)."""

from __future__ import annotations

import json
from pathlib import Path

from distiller.errors import MLFFDError


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="summarise a dataset (.h5) or a frozen model (.pt)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def describe(path: str) -> dict:
    file = Path(path)
    if file.is_dir():
        raise MLFFDError(f"{path} is a directory; give a dataset (.h5) or a model (.pt) file")
    if not file.is_file():
        raise MLFFDError(f"{path} does not exist")
    with open(file, "rb") as fh:
        magic = fh.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":
        from distiller.data.dataset import summarize_dataset

        return {"kind": "dataset", **summarize_dataset(path)}
    if magic[:2] == b"PK":
        from export.contract import read_metadata

        return {"kind": "model", **read_metadata(path)}
    raise MLFFDError(f"{path} is neither an mlffd dataset (HDF5) nor an mlffd model (TorchScript)")


def run(args) -> int:
    info = describe(args.file)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, list):
                value = " ".join(str(v) for v in value)
            print(f"{key:>22}: {value}")
    return 0
