"""One HDF5 file of teacher-labelled frames: appendable, crash-safe, ragged.

Layout (schema version 1)::

    /                      attrs: format="mlffd-dataset", schema_version=1, teacher_name,
                                  teacher_version, created, mlffd_version
    /committed    int64[2] (n_frames, n_atoms) that are complete; everything past it is ignored
    /atoms/positions   float64[A,3]  Angstrom
    /atoms/numbers     int16[A]
    /atoms/forces      float64[A,3]  eV/Angstrom
    /atoms/velocities  float64[A,3]  Angstrom/fs (ASE units * fs), NaN where a frame has none
    /atoms/atom_energies float64[A]  eV, the teacher's per-atom energies (summing to the frame's
                                     energy), NaN where a frame has none; optional: files written
                                     before it existed lack it and read as having none
    /frames/n_atoms    int64[F]
    /frames/offset     int64[F]      first row of the frame in /atoms/*
    /frames/energy     float64[F]    eV
    /frames/cell       float64[F,3,3]
    /frames/pbc        bool[F,3]
    /frames/stress     float64[F,6]  ASE Voigt order (xx,yy,zz,yz,xz,xy), eV/A^3, NaN if absent
    /frames/has_stress bool[F]
    /frames/has_velocities bool[F]
    /frames/temperature float64[F]   K (sampling temperature)
    /frames/seed       int64[F]
    /frames/sampler    bytes[F] (S16)
    /frames/key        bytes[F] (S128)  unique recipe key

This module owns the format: its constants, field shapes and the checks a file must pass
to be read. Reading: mlffd.data.dataset; writing: mlffd.data.writer; extended XYZ: mlffd.data.extxyz.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from mlffd.errors import MLFFDError

FORMAT = "mlffd-dataset"
SCHEMA_VERSION = 1
KEY_LEN = 128
SAMPLER_LEN = 16
VELOCITY_UNIT = "Angstrom/fs"

ATOM_FIELDS = {
    "positions": ("f8", (3,)),
    "numbers": ("i2", ()),
    "forces": ("f8", (3,)),
    "velocities": ("f8", (3,)),
    "atom_energies": ("f8", ()),
}
# Per-atom energies must add up to the frame's energy to this tolerance (eV).
ATOM_ENERGY_SUM_TOL = 1e-3
# Atom fields added after schema version 1 was fixed: absent in older files, read as all-NaN.
OPTIONAL_ATOM_FIELDS = ("atom_energies",)
FRAME_FIELDS = {
    "n_atoms": ("i8", ()),
    "offset": ("i8", ()),
    "energy": ("f8", ()),
    "cell": ("f8", (3, 3)),
    "pbc": ("bool", (3,)),
    "stress": ("f8", (6,)),
    "has_stress": ("bool", ()),
    "has_velocities": ("bool", ()),
    "temperature": ("f8", ()),
    "seed": ("i8", ()),
    "sampler": (f"S{SAMPLER_LEN}", ()),
    "key": (f"S{KEY_LEN}", ()),
}



def open_for_read(path: Path) -> h5py.File:
    """Open read-only: a plain open first, SWMR read mode for a file that a writer holds open or a
    killed writer left flagged (the plain open refuses those). The plain open also refuses a
    truncated file at once, where an SWMR reader retries its reads for many minutes."""
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "truncated file" in str(exc):
            raise truncated_error(path) from None
        return h5py.File(path, "r", libver="latest", swmr=True, locking=False)


def truncated_error(path: Path) -> MLFFDError:
    return MLFFDError(f"{path} is truncated (shorter than its HDF5 header says: an interrupted copy or a full "
                      "disk?); copy it again or regenerate it")



def check_file(path: Path) -> None:
    if not path.exists():
        raise MLFFDError(f"dataset not found: {path}")
    if path.is_dir():
        raise MLFFDError(f"dataset path is a directory, not an HDF5 file: {path}")
    if not h5py.is_hdf5(str(path)):
        raise MLFFDError(f"not an HDF5 file: {path}")


def check_schema(f: h5py.File, path: Path) -> None:
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        raise MLFFDError(f"{path} is an HDF5 file but not an mlffd dataset (no format={FORMAT!r})")
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise MLFFDError(
            f"{path} has dataset schema version {version}; this mlffd reads version {SCHEMA_VERSION}"
        )
    for name in ("committed", "atoms", "frames"):
        if name not in f:
            raise MLFFDError(f"{path} is a damaged mlffd dataset: missing /{name}")
    check_layout(f, path)


def check_layout(f: h5py.File, path: Path) -> None:
    """Every committed frame must be whole: arrays of the documented shapes with rows for every
    committed atom and frame, frames of at least one atom laid end to end. A file damaged by hand
    or by a tool would otherwise be summarised, or trained on, with rows from the wrong atoms."""
    def damaged(what: str) -> MLFFDError:
        return MLFFDError(f"{path} is a damaged mlffd dataset: {what}; regenerate it (or copy it again)")

    committed = f["committed"]
    if committed.shape != (2,):
        raise damaged(f"/committed has shape {committed.shape}, not (2,)")
    n_frames, n_atoms = (int(x) for x in committed[...])
    if n_frames < 0 or n_atoms < 0:
        raise damaged(f"/committed holds negative counts ({n_frames}, {n_atoms})")
    for group, fields, rows in (("atoms", ATOM_FIELDS, n_atoms), ("frames", FRAME_FIELDS, n_frames)):
        for name, (_, shape) in fields.items():
            if name not in f[group]:
                if name in OPTIONAL_ATOM_FIELDS:
                    continue
                raise damaged(f"missing /{group}/{name}")
            ds = f[group][name]
            if not isinstance(ds, h5py.Dataset) or ds.shape[1:] != shape or ds.shape[0] < rows:
                got = ds.shape if isinstance(ds, h5py.Dataset) else "a group"
                want = ", ".join(str(x) for x in (rows, *shape))
                raise damaged(f"/{group}/{name} has shape {got}, but {n_frames} committed frame(s) of {n_atoms} "
                              f"atoms need at least ({want}{',' if not shape else ''})")
    sizes = f["frames"]["n_atoms"][:n_frames]
    offsets = f["frames"]["offset"][:n_frames]
    if len(sizes) and sizes.min() < 1:
        raise damaged(f"frame {int(np.argmin(sizes))} has {int(sizes.min())} atoms")
    starts = np.cumsum(sizes) - sizes
    if int(sizes.sum()) != n_atoms or not np.array_equal(offsets, starts):
        raise damaged(f"the frames' n_atoms and offsets ({int(sizes.sum())} atoms) do not match the {n_atoms} "
                      "committed atom rows")



def attr_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)



def read_atom_field(f: h5py.File, name: str, n_atoms: int) -> np.ndarray:
    if name in f["atoms"]:
        return f["atoms"][name][:n_atoms]
    dtype, shape = ATOM_FIELDS[name]
    return np.full((n_atoms, *shape), np.nan, dtype=dtype)



