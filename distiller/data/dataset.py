"""Reading a dataset of teacher-labelled frames (the format: mlffd.data.schema)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from mlffd.data.schema import (
    ATOM_FIELDS,
    FORMAT,
    FRAME_FIELDS,
    SCHEMA_VERSION,
    attr_str,
    check_file,
    check_schema,
    open_for_read,
    read_atom_field,
)
from mlffd.errors import MLFFDError


class Dataset:
    """Read access to the committed frames of a dataset (arrays are read once, lazily)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        check_file(self.path)
        try:
            f = open_for_read(self.path)
        except OSError as exc:
            raise MLFFDError(f"cannot open {self.path} as HDF5: {exc}") from None
        with f:
            check_schema(f, self.path)
            self._attrs = {k: (attr_str(v) if isinstance(v, (bytes, str)) else v) for k, v in f.attrs.items()}
            n_frames, n_atoms = (int(x) for x in f["committed"][...])
            self._n = n_frames
            self._atoms = {k: read_atom_field(f, k, n_atoms) for k in ATOM_FIELDS}
            self._frames = {k: f["frames"][k][:n_frames] for k in FRAME_FIELDS}
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

