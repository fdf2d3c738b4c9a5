"""Appending teacher-labelled frames to a dataset (mlffd.data.schema), crash-safely.

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
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from mlffd.data.schema import (
    ATOM_ENERGY_SUM_TOL,
    ATOM_FIELDS,
    FORMAT,
    FRAME_FIELDS,
    KEY_LEN,
    OPTIONAL_ATOM_FIELDS,
    SAMPLER_LEN,
    SCHEMA_VERSION,
    VELOCITY_UNIT,
    attr_str,
    check_file,
    check_schema,
    open_for_read,
    read_atom_field,
    truncated_error,
)
from mlffd.errors import MLFFDError
from mlffd.neighbours import check_cell, check_numbers, check_overlap, shortest_distance
from mlffd.voigt import voigt


def _mlffd_version() -> str:
    from mlffd import __version__

    return __version__


def _add_optional_atom_fields(f: h5py.File, n_atoms: int) -> None:
    """Give a file written before an optional atom field existed that field, NaN for its atoms."""
    for name in OPTIONAL_ATOM_FIELDS:
        if name not in f["atoms"]:
            dtype, shape = ATOM_FIELDS[name]
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
    for name, (dtype, shape) in ATOM_FIELDS.items():
        atoms.create_dataset(
            name, shape=(0, *shape), maxshape=(None, *shape), chunks=(1024, *shape), dtype=dtype
        )
    frames = f.create_group("frames")
    for name, (dtype, shape) in FRAME_FIELDS.items():
        frames.create_dataset(
            name, shape=(0, *shape), maxshape=(None, *shape), chunks=(256, *shape), dtype=dtype
        )


def _rebuild(path: Path) -> None:
    """Copy the committed frames of a file left by a killed writer into a clean file, atomically."""
    with open_for_read(path) as src:
        check_schema(src, path)
        n_frames, n_atoms = (int(x) for x in src["committed"][...])
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".rebuild", dir=path.parent)
        os.close(fd)
        try:
            with h5py.File(tmp, "w", libver="latest", locking=False) as dst:
                _create_layout(dst, "", "")
                for k, v in src.attrs.items():
                    dst.attrs[k] = v
                for name in ATOM_FIELDS:
                    data = read_atom_field(src, name, n_atoms)
                    dst["atoms"][name].resize(data.shape)
                    dst["atoms"][name][...] = data
                for name in FRAME_FIELDS:
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
            check_file(self.path)
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
                raise truncated_error(self.path) from None
            if "already open for write" not in str(exc) and "consistency flags" not in str(exc):
                raise MLFFDError(f"cannot open {self.path} for writing: {exc}") from None
            # left by a killed writer (we hold the lock, so nobody is writing): rebuild it
            _rebuild(self.path)
            self._unlock()
            self._lock()
            f = h5py.File(self.path, "a", libver="latest", locking=False)
        try:
            check_schema(f, self.path)
            name = attr_str(f.attrs.get("teacher_name", ""))
            version = attr_str(f.attrs.get("teacher_version", ""))
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
            for name_, (_, shape) in ATOM_FIELDS.items():
                f["atoms"][name_].resize((n_atoms, *shape))
            for name_, (_, shape) in FRAME_FIELDS.items():
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
        stress = voigt(stress)
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

