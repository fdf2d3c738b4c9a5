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

Crash safety: the writer runs in HDF5 SWMR mode (libver="latest"). An append writes the frame's
rows, flushes, and only then advances /committed and flushes again, so a `kill -9` at any moment
leaves a file whose committed frames are all complete. A file left by a killed writer keeps HDF5's
"open for write" flag; readers open it in SWMR-read mode (which ignores the flag) and a resuming
writer rebuilds it from its committed frames into a fresh file that atomically replaces it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from mlffd.data.atomic import remove_stale_temps, temp_path
from mlffd.errors import MLFFDError
from mlffd.neighbours import check_cell, check_numbers, check_overlap, shortest_distance

FORMAT = "mlffd-dataset"
SCHEMA_VERSION = 1
KEY_LEN = 128
SAMPLER_LEN = 16
VELOCITY_UNIT = "Angstrom/fs"

_ATOM_FIELDS = {
    "positions": ("f8", (3,)),
    "numbers": ("i2", ()),
    "forces": ("f8", (3,)),
    "velocities": ("f8", (3,)),
    "atom_energies": ("f8", ()),
}
# Per-atom energies must add up to the frame's energy to this tolerance (eV).
ATOM_ENERGY_SUM_TOL = 1e-3
# Atom fields added after schema version 1 was fixed: absent in older files, read as all-NaN.
_OPTIONAL_ATOM_FIELDS = ("atom_energies",)
_FRAME_FIELDS = {
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


def _mlffd_version() -> str:
    from mlffd import __version__

    return __version__


def _open_for_read(path: Path) -> h5py.File:
    """Open read-only: a plain open first, SWMR read mode for a file that a writer holds open or a
    killed writer left flagged (the plain open refuses those). The plain open also refuses a
    truncated file at once, where an SWMR reader retries its reads for many minutes."""
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "truncated file" in str(exc):
            raise _truncated(path) from None
        return h5py.File(path, "r", libver="latest", swmr=True, locking=False)


def _truncated(path: Path) -> MLFFDError:
    return MLFFDError(f"{path} is truncated (shorter than its HDF5 header says: an interrupted copy or a full "
                      "disk?); copy it again or regenerate it")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MLFFDError(f"dataset not found: {path}")
    if path.is_dir():
        raise MLFFDError(f"dataset path is a directory, not an HDF5 file: {path}")
    if not h5py.is_hdf5(str(path)):
        raise MLFFDError(f"not an HDF5 file: {path}")


def _check_schema(f: h5py.File, path: Path) -> None:
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
    _check_layout(f, path)


def _check_layout(f: h5py.File, path: Path) -> None:
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
    for group, fields, rows in (("atoms", _ATOM_FIELDS, n_atoms), ("frames", _FRAME_FIELDS, n_frames)):
        for name, (_, shape) in fields.items():
            if name not in f[group]:
                if name in _OPTIONAL_ATOM_FIELDS:
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


def _attr_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Dataset:
    """Read access to the committed frames of a dataset (arrays are read once, lazily)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        _check_file(self.path)
        try:
            f = _open_for_read(self.path)
        except OSError as exc:
            raise MLFFDError(f"cannot open {self.path} as HDF5: {exc}") from None
        with f:
            _check_schema(f, self.path)
            self._attrs = {k: (_attr_str(v) if isinstance(v, (bytes, str)) else v) for k, v in f.attrs.items()}
            n_frames, n_atoms = (int(x) for x in f["committed"][...])
            self._n = n_frames
            self._atoms = {k: _read_atom_field(f, k, n_atoms) for k in _ATOM_FIELDS}
            self._frames = {k: f["frames"][k][:n_frames] for k in _FRAME_FIELDS}
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, frames={self._n}, teacher={self.metadata.get('teacher_name')!r})"

    @property
    def metadata(self) -> dict:
        meta = {
            "format": self._attrs.get("format"),
            "schema_version": int(self._attrs.get("schema_version")),
            "teacher_name": self._attrs.get("teacher_name"),
            "teacher_version": self._attrs.get("teacher_version"),
            "created": self._attrs.get("created"),
            "mlffd_version": self._attrs.get("mlffd_version"),
            "frames": self._n,
            "fingerprint": self.fingerprint,
        }
        return meta

    @property
    def elements(self) -> list[str]:
        from ase.data import chemical_symbols

        zs = sorted({int(z) for z in np.unique(self._atoms["numbers"])})
        return [chemical_symbols[z] for z in zs]

    @property
    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) of the labelled content: structures, energies, forces, stress."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(f"{FORMAT}/{SCHEMA_VERSION}/{self._n}".encode())
            h.update(np.ascontiguousarray(self._atoms["numbers"], dtype="<i8").tobytes())
            for name in ("positions", "forces"):
                h.update(np.ascontiguousarray(self._atoms[name], dtype="<f8").tobytes())
            h.update(np.ascontiguousarray(self._frames["n_atoms"], dtype="<i8").tobytes())
            for name in ("energy", "cell"):
                h.update(np.ascontiguousarray(self._frames[name], dtype="<f8").tobytes())
            h.update(np.ascontiguousarray(self._frames["pbc"], dtype="u1").tobytes())
            stress = np.where(self._frames["has_stress"][:, None], self._frames["stress"], 0.0)
            h.update(np.ascontiguousarray(stress, dtype="<f8").tobytes())
            h.update(np.ascontiguousarray(self._frames["has_stress"], dtype="u1").tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def keys(self) -> list[str]:
        return [k.decode() for k in self._frames["key"]]

    def frame(self, i: int) -> dict:
        if not -self._n <= i < self._n:
            raise IndexError(f"frame {i} out of range for {self._n} frames")
        i = i % self._n
        fr = self._frames
        start = int(fr["offset"][i])
        stop = start + int(fr["n_atoms"][i])
        out = {
            "positions": np.array(self._atoms["positions"][start:stop], dtype=np.float64),
            "numbers": np.array(self._atoms["numbers"][start:stop], dtype=np.int64),
            "cell": np.array(fr["cell"][i], dtype=np.float64),
            "pbc": np.array(fr["pbc"][i], dtype=bool),
            "energy": float(fr["energy"][i]),
            "forces": np.array(self._atoms["forces"][start:stop], dtype=np.float64),
            "stress": np.array(fr["stress"][i], dtype=np.float64) if fr["has_stress"][i] else None,
            "temperature": float(fr["temperature"][i]),
            "sampler": fr["sampler"][i].decode(),
            "key": fr["key"][i].decode(),
            "seed": int(fr["seed"][i]),
            "velocities": (
                np.array(self._atoms["velocities"][start:stop], dtype=np.float64)
                if fr["has_velocities"][i]
                else None
            ),
            "atom_energies": None,
        }
        atom_energies = np.array(self._atoms["atom_energies"][start:stop], dtype=np.float64)
        if np.isfinite(atom_energies).all():
            out["atom_energies"] = atom_energies
        return out

    def frames(self) -> list[dict]:
        return [self.frame(i) for i in range(self._n)]

    def to_atoms(self, i: int):
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        fr = self.frame(i)
        atoms = Atoms(numbers=fr["numbers"], positions=fr["positions"], cell=fr["cell"], pbc=fr["pbc"])
        if fr["velocities"] is not None:
            from ase import units

            atoms.set_velocities(fr["velocities"] / units.fs)
        atoms.info.update(
            key=fr["key"], sampler=fr["sampler"], temperature=fr["temperature"], seed=fr["seed"]
        )
        results = {"energy": fr["energy"], "free_energy": fr["energy"], "forces": fr["forces"]}
        if fr["atom_energies"] is not None:
            results["energies"] = fr["atom_energies"]
        if fr["stress"] is not None:
            results["stress"] = fr["stress"]
        atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Open a dataset for reading (MLFFDError for a missing file, non-HDF5, or another schema)."""
    return Dataset(path)


# --------------------------------------------------------------------------------------------
# writing


def _read_atom_field(f: h5py.File, name: str, n_atoms: int) -> np.ndarray:
    if name in f["atoms"]:
        return f["atoms"][name][:n_atoms]
    dtype, shape = _ATOM_FIELDS[name]
    return np.full((n_atoms, *shape), np.nan, dtype=dtype)


def _add_optional_atom_fields(f: h5py.File, n_atoms: int) -> None:
    """Give a file written before an optional atom field existed that field, NaN for its atoms."""
    for name in _OPTIONAL_ATOM_FIELDS:
        if name not in f["atoms"]:
            dtype, shape = _ATOM_FIELDS[name]
            f["atoms"].create_dataset(name, data=np.full((n_atoms, *shape), np.nan, dtype=dtype),
                                      maxshape=(None, *shape), chunks=(1024, *shape))


def _create_layout(f: h5py.File, teacher_name: str, teacher_version: str) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["teacher_name"] = teacher_name
    f.attrs["teacher_version"] = teacher_version
    f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    f.attrs["mlffd_version"] = _mlffd_version()
    f.attrs["velocity_unit"] = VELOCITY_UNIT
    f.attrs["stress_convention"] = "ASE Voigt xx,yy,zz,yz,xz,xy; eV/A^3; (1/V) dE/dstrain"
    f.create_dataset("committed", data=np.zeros(2, dtype="i8"))
    atoms = f.create_group("atoms")
    for name, (dtype, shape) in _ATOM_FIELDS.items():
        atoms.create_dataset(
            name, shape=(0, *shape), maxshape=(None, *shape), chunks=(1024, *shape), dtype=dtype
        )
    frames = f.create_group("frames")
    for name, (dtype, shape) in _FRAME_FIELDS.items():
        frames.create_dataset(
            name, shape=(0, *shape), maxshape=(None, *shape), chunks=(256, *shape), dtype=dtype
        )


def _rebuild(path: Path) -> None:
    """Copy the committed frames of a file left by a killed writer into a clean file, atomically."""
    with _open_for_read(path) as src:
        _check_schema(src, path)
        n_frames, n_atoms = (int(x) for x in src["committed"][...])
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".rebuild", dir=path.parent)
        os.close(fd)
        try:
            with h5py.File(tmp, "w", libver="latest", locking=False) as dst:
                _create_layout(dst, "", "")
                for k, v in src.attrs.items():
                    dst.attrs[k] = v
                for name in _ATOM_FIELDS:
                    data = _read_atom_field(src, name, n_atoms)
                    dst["atoms"][name].resize(data.shape)
                    dst["atoms"][name][...] = data
                for name in _FRAME_FIELDS:
                    data = src["frames"][name][:n_frames]
                    dst["frames"][name].resize(data.shape)
                    dst["frames"][name][...] = data
                dst["committed"][...] = [n_frames, n_atoms]
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class DatasetWriter:
    """Append labelled frames to a dataset (created if missing), crash-safely.

    Use as a context manager::

        with DatasetWriter("data.h5", "sevennet-0", "sevenn 0.13.0 7net-0") as w:
            w.append(atoms, sampler="rattle", temperature=300.0, seed=1, key="si/rattle/...")
    """

    def __init__(self, path: str | os.PathLike, teacher_name: str, teacher_version: str):
        self.path = Path(path)
        self.teacher_name = teacher_name
        self.teacher_version = teacher_version
        self._f: h5py.File | None = None
        self._lock_fd: int | None = None
        self._keys: set[str] = set()
        self._n_frames = 0
        self._n_atoms = 0

    # -- opening ------------------------------------------------------------------------
    def _lock(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MLFFDError(f"another process is writing {self.path}; wait for it or stop it") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def open(self) -> "DatasetWriter":
        try:
            return self._open()
        except OSError as exc:
            raise MLFFDError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def _open(self) -> "DatasetWriter":
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise MLFFDError(f"output directory does not exist: {parent}")
        if self.path.exists():
            _check_file(self.path)
            if not os.access(self.path, os.W_OK):
                raise MLFFDError(f"output file is not writable: {self.path}")
        else:
            if not os.access(parent, os.W_OK):
                raise MLFFDError(f"output directory is not writable: {parent}")
            # create in a temporary file and rename, so a half-created file never appears
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".new", dir=parent)
            os.close(fd)
            try:
                with h5py.File(tmp, "w", libver="latest", locking=False) as f:
                    _create_layout(f, self.teacher_name, self.teacher_version)
                if self.path.exists():  # lost a race with another creator
                    raise MLFFDError(f"{self.path} appeared while creating it; run again")
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        self._lock()
        try:
            self._open_existing()
        except BaseException:
            self._unlock()
            raise
        return self

    def _open_existing(self) -> None:
        try:
            f = h5py.File(self.path, "a", libver="latest", locking=False)
        except OSError as exc:
            if "truncated file" in str(exc):
                raise _truncated(self.path) from None
            if "already open for write" not in str(exc) and "consistency flags" not in str(exc):
                raise MLFFDError(f"cannot open {self.path} for writing: {exc}") from None
            # left by a killed writer (we hold the lock, so nobody is writing): rebuild it
            _rebuild(self.path)
            self._unlock()
            self._lock()
            f = h5py.File(self.path, "a", libver="latest", locking=False)
        try:
            _check_schema(f, self.path)
            name = _attr_str(f.attrs.get("teacher_name", ""))
            version = _attr_str(f.attrs.get("teacher_version", ""))
            if name != self.teacher_name:
                raise MLFFDError(
                    f"{self.path} holds labels from teacher {name!r}, not {self.teacher_name!r}; "
                    "use another output file"
                )
            if version != self.teacher_version:
                raise MLFFDError(
                    f"{self.path} holds labels from {name} version {version!r}, not "
                    f"{self.teacher_version!r}; use another output file"
                )
            n_frames, n_atoms = (int(x) for x in f["committed"][...])
            _add_optional_atom_fields(f, n_atoms)
            # drop anything a killed writer left past the committed counter
            for name_, (_, shape) in _ATOM_FIELDS.items():
                f["atoms"][name_].resize((n_atoms, *shape))
            for name_, (_, shape) in _FRAME_FIELDS.items():
                f["frames"][name_].resize((n_frames, *shape))
            self._keys = {k.decode() for k in f["frames"]["key"][:n_frames]}
            self._n_frames, self._n_atoms = n_frames, n_atoms
            f.flush()
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        self._f = f

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        self._unlock()

    def __enter__(self) -> "DatasetWriter":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------
    def keys(self) -> set[str]:
        """Keys of the committed frames."""
        return set(self._keys)

    def __len__(self) -> int:
        return self._n_frames

    def append(
        self,
        atoms,
        *,
        sampler: str,
        temperature: float,
        seed: int,
        key: str,
        velocities=None,
        energy: float | None = None,
        forces=None,
        stress=None,
        atom_energies=None,
    ) -> None:
        """Append one labelled frame. Labels come from `atoms.calc` unless given explicitly
        (per-atom energies from the calculator's "energies" when it has them).

        `velocities` are in Angstrom/fs (pass ``atoms.get_velocities() * ase.units.fs``).
        """
        if self._f is None:
            raise RuntimeError("DatasetWriter is not open")
        if key in self._keys:
            raise MLFFDError(f"frame key {key!r} is already in {self.path}")
        rows = frame_rows(atoms, sampler=sampler, temperature=temperature, seed=seed, key=key,
                          velocities=velocities, energy=energy, forces=forces, stress=stress,
                          atom_energies=atom_energies)
        self.write_rows(*rows)

    def write_rows(self, per_atom: dict, per_frame: dict) -> None:
        """Append one frame already checked by `frame_rows` (its key must be new)."""
        key = per_frame["key"].decode()
        if key in self._keys:
            raise MLFFDError(f"frame key {key!r} is already in {self.path}")
        f = self._f
        n = per_frame["n_atoms"]
        a0, a1 = self._n_atoms, self._n_atoms + n
        i = self._n_frames
        for name, data in per_atom.items():
            ds = f["atoms"][name]
            ds.resize((a1, *ds.shape[1:]))
            ds[a0:a1] = data
        for name, value in dict(per_frame, offset=a0).items():
            ds = f["frames"][name]
            ds.resize((i + 1, *ds.shape[1:]))
            ds[i] = value
        f.flush()  # rows are on disk before the counter says they exist
        f["committed"][...] = [i + 1, a1]
        f.flush()
        self._n_frames, self._n_atoms = i + 1, a1
        self._keys.add(key)


# Larger than this (eV/A^3, about 160 GPa) a stress is taken for another unit: 52 in a file in
# kBar (5.2 GPa) would otherwise enter as 8,300 GPa. The unit label of a file cannot be trusted.
MAX_STRESS = 1.0


def frame_rows(atoms, *, sampler: str, temperature: float, seed: int, key: str, velocities=None,
               energy: float | None = None, forces=None, stress=None, atom_energies=None,
               where: str | None = None) -> tuple[dict, dict]:
    """Check one labelled frame and return its rows (per atom, per frame; the offset is the
    writer's). Every check a frame must pass to enter a dataset is here, so a caller can check a
    whole file before writing its first frame. Messages name the frame as `where` (default: its key)."""
    where = where or f"frame {key!r}"
    if len(key.encode()) > KEY_LEN:
        raise MLFFDError(f"frame key longer than {KEY_LEN} bytes: {key!r}")
    if len(sampler.encode()) > SAMPLER_LEN:
        raise MLFFDError(f"sampler name longer than {SAMPLER_LEN} bytes: {sampler!r}")
    n = len(atoms)
    if n == 0:
        raise MLFFDError(f"{where} has no atoms; a frame needs at least one")
    if energy is None or forces is None:
        calc = atoms.calc
        if calc is None:
            raise MLFFDError(f"{where} has no energy/forces (no calculator attached)")
        results = calc.results
        if energy is None:
            energy = results.get("energy")
        if forces is None:
            forces = results.get("forces")
        if stress is None:
            stress = results.get("stress")
        if atom_energies is None:
            atom_energies = results.get("energies")
    if energy is None or forces is None:
        raise MLFFDError(f"{where} has no energy or no forces")
    forces = np.asarray(forces, dtype=np.float64)
    if forces.size != 3 * n:
        raise MLFFDError(f"{where}: forces have shape {forces.shape}, not ({n}, 3) for {n} atoms")
    forces = forces.reshape(n, 3)
    energy = float(energy)
    if stress is not None:
        stress = np.asarray(stress, dtype=np.float64)
        if stress.shape == (3, 3):
            stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        stress = stress.reshape(6)
    if not np.isfinite(energy) or not np.isfinite(forces).all() or (
        stress is not None and not np.isfinite(stress).all()
    ):
        raise MLFFDError(f"teacher returned non-finite labels for {where}")
    if stress is not None and np.abs(stress).max() > MAX_STRESS:
        from ase.units import GPa

        big = float(np.abs(stress).max())
        raise MLFFDError(f"{where}: stress of {big:.4g} eV/A^3 ({big / GPa:.3g} GPa) is beyond any material "
                         f"(> {MAX_STRESS} eV/A^3): is it in kBar or GPa? mlffd stores eV/A^3 (ASE units); convert "
                         "it (kBar * 6.2415e-4, GPa * 6.2415e-3)")
    positions = np.asarray(atoms.get_positions(), dtype=np.float64)
    if not np.isfinite(positions).all():
        raise MLFFDError(f"{where} has non-finite positions")
    try:  # a frame no neighbour list (or no calculator) can take must not enter the file
        check_numbers(atoms.get_atomic_numbers())
        check_cell(atoms.get_cell()[:], atoms.get_pbc())
        check_overlap(shortest_distance(positions, atoms.get_cell()[:], atoms.get_pbc()))
    except MLFFDError as exc:
        raise MLFFDError(f"{where}: {exc}") from None
    vel = (
        np.full((n, 3), np.nan) if velocities is None else np.asarray(velocities, dtype=np.float64).reshape(n, 3)
    )
    if atom_energies is None:
        atom_energies = np.full(n, np.nan)
    else:
        atom_energies = np.asarray(atom_energies, dtype=np.float64).reshape(n)
        if not np.isfinite(atom_energies).all() or abs(atom_energies.sum() - energy) > ATOM_ENERGY_SUM_TOL:
            raise MLFFDError(f"{where}: per-atom energies must be finite and sum to the energy")
    per_atom = {
        "positions": positions,
        "numbers": np.asarray(atoms.get_atomic_numbers(), dtype=np.int16),
        "forces": forces,
        "velocities": vel,
        "atom_energies": atom_energies,
    }
    per_frame = {
        "n_atoms": n,
        "energy": energy,
        "cell": np.asarray(atoms.get_cell()[:], dtype=np.float64),
        "pbc": np.asarray(atoms.get_pbc(), dtype=bool),
        "stress": stress if stress is not None else np.full(6, np.nan),
        "has_stress": stress is not None,
        "has_velocities": velocities is not None,
        "temperature": float(temperature),
        "seed": int(seed),
        "sampler": sampler.encode(),
        "key": key.encode(),
    }
    return per_atom, per_frame


# --------------------------------------------------------------------------------------------
# summaries and extxyz


def summarize_dataset(path: str | os.PathLike) -> dict:
    """Counts, elements, teacher and label statistics of a dataset (for `mlffd info`)."""
    ds = open_dataset(path)
    meta = ds.metadata
    n = len(ds)
    out: dict = {
        "path": str(Path(path)),
        "frames": n,
        "teacher": meta["teacher_name"],
        "teacher_version": meta["teacher_version"],
        "schema_version": meta["schema_version"],
        "created": meta["created"],
        "fingerprint": meta["fingerprint"],
        "elements": ds.elements,
    }
    if n == 0:
        out.update(atoms_per_frame=None, samplers={}, stress_present=0)
        return out
    fr, at = ds._frames, ds._atoms
    nat = fr["n_atoms"].astype(np.float64)
    e_per_atom = fr["energy"] / nat
    fnorm = np.linalg.norm(at["forces"], axis=1)
    samplers: dict[str, int] = {}
    for s in fr["sampler"]:
        samplers[s.decode()] = samplers.get(s.decode(), 0) + 1
    temps = sorted({float(t) for t in fr["temperature"]})
    out.update(
        atoms_total=int(nat.sum()),
        atoms_per_frame={"min": int(nat.min()), "max": int(nat.max()), "mean": float(nat.mean())},
        samplers=samplers,
        temperatures=temps,
        energy_per_atom={"mean": float(e_per_atom.mean()), "std": float(e_per_atom.std())},
        force_norm={"mean": float(fnorm.mean()), "max": float(fnorm.max())},
        stress_present=int(fr["has_stress"].sum()),
    )
    if fr["has_stress"].any():
        s = fr["stress"][fr["has_stress"]]
        out["stress_abs"] = {"mean": float(np.abs(s).mean()), "max": float(np.abs(s).max())}
    return out


def export_extxyz(path: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write every committed frame to an extended-XYZ file; returns the number of frames."""
    import ase.io

    ds = open_dataset(path)
    out = Path(out)
    # never write text over a dataset (the input itself, or any other HDF5 file)
    if out.exists() and (out.resolve() == Path(path).resolve() or h5py.is_hdf5(str(out))):
        raise MLFFDError(f"{out} is an HDF5 dataset; refusing to overwrite it with extended XYZ (choose another "
                         "output file, e.g. frames.extxyz)")
    # nor text under a name that says otherwise: '-' is no stdout here, and .h5 files are datasets
    if str(out) == "-" or out.suffix.lower() in (".h5", ".hdf5"):
        raise MLFFDError(f"data export writes extended XYZ, not to {str(out)!r}: give a file name ending in .extxyz "
                         "or .xyz (to copy a dataset, copy the .h5 file)")
    images = [ds.to_atoms(i) for i in range(len(ds))]
    meta = ds.metadata
    for a in images:
        a.info["teacher"] = meta["teacher_name"]
        a.info["teacher_version"] = meta["teacher_version"]
    remove_stale_temps(out)  # left by an export killed outright
    tmp = temp_path(out)
    try:  # written next to `out` and renamed over it, so a failure leaves no half-written file
        ase.io.write(str(tmp), images, format="extxyz")
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise MLFFDError(f"cannot write {out}: {exc.strerror or exc}") from None
    return len(images)


def import_extxyz(
    path: str | os.PathLike,
    out: str | os.PathLike,
    teacher_name: str | None = None,
    teacher_version: str | None = None,
) -> int:
    """Append labelled frames (energy + forces required) from an ASE-readable file to a dataset."""
    import ase.io

    from ase.io.formats import UnknownFileTypeError

    try:
        images = ase.io.read(str(path), index=":")
    except FileNotFoundError:
        raise MLFFDError(f"file not found: {path}") from None
    except UnknownFileTypeError as exc:
        raise MLFFDError(f"cannot read {path}: ASE does not know the file type {str(exc)!r}; give an extended XYZ "
                         "file (.extxyz or .xyz) with energies and forces") from None
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for bad files
        raise MLFFDError(f"cannot read {path}: {exc}") from None
    if not images:
        raise MLFFDError(f"{path} holds no structures")
    # Every structure is checked (the writer's own checks included) before the first is written:
    # a refused import leaves the dataset as it was and names the structure.
    stem = Path(path).stem[:40]
    rows, seen = [], {}
    for i, a in enumerate(images):
        rows.append(_import_rows(a, f"{path}: structure {i}", i, stem))
        key = rows[-1][1]["key"].decode()
        if key in seen:
            raise MLFFDError(f"{path}: structures {seen[key]} and {i} have the same key {key!r}; keys must be unique")
        seen[key] = i
    first = images[0].info
    teacher_name = teacher_name or str(first.get("teacher", "external"))
    teacher_version = teacher_version or str(first.get("teacher_version", "unknown"))
    out = Path(out)
    created = not out.exists()
    added = 0
    writer = DatasetWriter(out, teacher_name, teacher_version)
    try:
        with writer as w:
            done = w.keys()
            for per_atom, per_frame in rows:
                if per_frame["key"].decode() not in done:  # imported before: resuming
                    w.write_rows(per_atom, per_frame)
                    added += 1
    except BaseException:
        if created and added == 0:  # no empty dataset left behind by a failed first import
            with contextlib.suppress(OSError):
                out.unlink()
        raise
    return added


def _voigt(stress) -> np.ndarray:
    stress = np.asarray(stress, dtype=np.float64)
    return stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]] if stress.shape == (3, 3) else stress.reshape(6)


def _import_rows(a, where: str, i: int, stem: str) -> tuple[dict, dict]:
    """One imported structure's rows (frame_rows), its info values checked and its key made."""
    from ase import units

    results = a.calc.results if a.calc is not None else {}
    if "energy" not in results or "forces" not in results:
        raise MLFFDError(f"{where} has no energy and forces")
    if not all(np.isfinite(v).all() for v in (a.positions, results["energy"], results["forces"])):
        raise MLFFDError(f"{where} has NaN or infinite positions or labels")
    stress = results.get("stress")
    if "virial" in a.info:  # extxyz's other stress label (ASE leaves it in info): virial = -stress * V
        if not a.pbc.all() or abs(a.get_volume()) < 1e-9:
            raise MLFFDError(f"{where}: a virial needs a cell periodic in all three directions")
        try:
            from_virial = _voigt(-np.asarray(a.info["virial"], dtype=np.float64).reshape(3, 3) / a.get_volume())
        except (TypeError, ValueError):
            raise MLFFDError(f"{where}: info virial is not 9 numbers") from None
        if stress is not None and not np.allclose(_voigt(stress), from_virial, rtol=1e-4, atol=1e-8):
            raise MLFFDError(f"{where}: its stress and its virial disagree (virial = -stress * volume); keep one")
        stress = from_virial if stress is None else stress
    info = {}
    for name, kind, default in (("seed", int, 0), ("temperature", float, 0.0)):
        value = a.info.get(name, default)
        try:
            number = float(value)
            if isinstance(value, bool) or (kind is int and not number.is_integer()):
                raise ValueError
            info[name] = kind(number)
        except (TypeError, ValueError):
            what = "an integer" if kind is int else "a number"
            raise MLFFDError(f"{where}: info {name}={str(value)!r} is not {what}; fix or remove it") from None
    key = a.info.get("key")
    if key is None:
        # the file's name alone would collide for two files of that name from different folders:
        # the content decides too (so importing the same file again adds nothing)
        digest = hashlib.sha256(np.ascontiguousarray(a.numbers, dtype="<i8").tobytes())
        for v in (a.positions, a.cell.array, results["energy"], results["forces"]):
            digest.update(np.ascontiguousarray(v, dtype="<f8").tobytes())
        key = f"import/{stem}/{i}/{digest.hexdigest()[:12]}"
    vel = a.get_velocities()
    has_vel = vel is not None and np.any(vel != 0)
    return frame_rows(a, sampler=str(a.info.get("sampler", "import"))[:SAMPLER_LEN], temperature=info["temperature"],
                      seed=info["seed"], key=str(key), velocities=vel * units.fs if has_vel else None, stress=stress,
                      where=where)
