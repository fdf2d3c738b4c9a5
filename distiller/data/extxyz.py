"""Extended XYZ in and out of a dataset: export for other tools, import of labelled frames."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import h5py
import numpy as np

from mlffd.data.atomic import remove_stale_temps, temp_path
from mlffd.data.dataset import open_dataset
from mlffd.data.schema import SAMPLER_LEN
from mlffd.data.writer import DatasetWriter, frame_rows
from mlffd.errors import MLFFDError
from mlffd.voigt import voigt


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
            from_virial = voigt(-np.asarray(a.info["virial"], dtype=np.float64).reshape(3, 3) / a.get_volume())
        except (TypeError, ValueError):
            raise MLFFDError(f"{where}: info virial is not 9 numbers") from None
        if stress is not None and not np.allclose(voigt(stress), from_virial, rtol=1e-4, atol=1e-8):
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
