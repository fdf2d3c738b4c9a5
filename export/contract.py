"""The frozen-artifact contract in code (docs/artifact.md is the prose version)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from mlffd.errors import MLFFDError
from mlffd.neighbours import MIN_DISTANCE
from mlffd.voigt import TO_LAMMPS

FORMAT = "mlffd"
# 2: the call takes float64 edge vectors instead of positions and shifts (precision far from the
# origin); frozen graphs on the custom ops carry radial tables. Hosts refuse format 1 (re-export).
# 3: the per-atom virial in mlffd's one Voigt order (mlffd.voigt, ASE's); format 2 gave it in LAMMPS's.
FORMAT_VERSION = 3
ASE_VOIGT_FORMAT = 3  # the first format whose per-atom virial is in mlffd.voigt's order
OLDEST_FORMAT_VERSION = 2
METADATA_JSON = "mlffd/metadata.json"
METADATA_TXT = "mlffd/metadata.txt"
# Keys every model carries; hosts may rely on them.
REQUIRED_KEYS = ("format", "format_version", "cutoff", "num_interactions", "elements", "dtype", "ops", "units")


def metadata_text(meta: dict) -> str:
    """The flat `key value...` twin of the JSON metadata, for C++ hosts."""
    lines = []
    for key in ("format", "format_version", "mlffd_version", "cutoff", "num_interactions", "elements", "dtype", "ops", "units"):
        value = meta[key]
        value = " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
        lines.append(f"{key} {value}".rstrip())
    return "\n".join(lines) + "\n"


def cpp_header() -> str:
    """The contract's constants for the C++ host (lammps_plugin/src/pair_mlffd.cpp), generated into the
    plugin's build folder by CMake so that the plugin never restates them by hand."""
    return "\n".join([
        "// Generated from export/contract.py by the plugin's CMake build; do not edit.",
        "#pragma once",
        f'static const char *MLFFD_FORMAT = "{FORMAT}";',
        f"static constexpr int MLFFD_FORMAT_VERSION = {FORMAT_VERSION};",
        f"static constexpr int MLFFD_OLDEST_FORMAT_VERSION = {OLDEST_FORMAT_VERSION};",
        f'static const char *MLFFD_METADATA_TXT = "{METADATA_TXT}";',
        "// closer than this (A) means overlapping atoms, not chemistry (mlffd.neighbours.MIN_DISTANCE)",
        f"static constexpr double MLFFD_MIN_DISTANCE = {MIN_DISTANCE!r};",
        "// the atom_virial column of each LAMMPS vatom column (mlffd.voigt.TO_LAMMPS), from format",
        "// MLFFD_ASE_VOIGT_FORMAT on (format 2 files give the per-atom virial in LAMMPS's order already)",
        f"static constexpr int MLFFD_ASE_VOIGT_FORMAT = {ASE_VOIGT_FORMAT};",
        f"static constexpr int MLFFD_ATOM_VIRIAL_TO_LAMMPS[6] = {{{', '.join(map(str, TO_LAMMPS))}}};",
        ""])


def write_cpp_header(path: str | Path) -> None:
    """Write cpp_header() to path, leaving the file untouched when it is already up to date (so that
    an unchanged contract recompiles nothing)."""
    path = Path(path)
    text = cpp_header()
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def read_metadata(path: str | Path) -> dict:
    """Metadata of a frozen model, checked; raises MLFFDError for anything that is not ours."""
    path = Path(path)
    if path.is_dir():
        raise MLFFDError(f"{path} is a directory; give the model file (.pt) that `mlffd export` wrote")
    if not path.is_file():
        raise MLFFDError(f"model file {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.namelist()
            names = [n for n in entries if n.endswith("extra/" + METADATA_JSON)]
            if not names and not any("/code/" in n for n in entries):  # torch.save zips carry no code
                raise MLFFDError(f"{path} is a PyTorch checkpoint (torch.save), not a frozen mlffd model; freeze a "
                                 "training run with `mlffd export RUN_DIR -o model.pt`")
            if not names:
                raise MLFFDError(f"{path} is a TorchScript file but not an mlffd model (no {METADATA_JSON}); "
                                 "write models with `mlffd export`")
            meta = json.loads(archive.read(names[0]))
    except zipfile.BadZipFile:
        raise MLFFDError(f"{path} is not an mlffd model (not a TorchScript archive)") from None
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if meta.get("format") != FORMAT or missing:
        raise MLFFDError(f"{path} is not an mlffd model (bad metadata: missing {', '.join(missing) or 'format'})")
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise MLFFDError(
            f"{path} has format version {meta['format_version']}, newer than this mlffd supports "
            f"({FORMAT_VERSION}); upgrade mlffd"
        )
    if int(meta["format_version"]) < OLDEST_FORMAT_VERSION:
        raise MLFFDError(
            f"{path} has format version {meta['format_version']} (positions as input, no radial tables), which this "
            f"mlffd no longer runs: re-export it from its checkpoint (mlffd export RUN_DIR -o model.pt)"
        )
    return meta


if __name__ == "__main__":  # the plugin's CMake build: python -m mlffd.export.contract HEADER_PATH
    import sys

    write_cpp_header(sys.argv[1])
