"""Teacher results cached by structure: the teacher's side of a validation is paid for once.

    teacher = CachedReference("sevennet-0", cache_path)     # an ASE calculator
    atoms.calc = teacher; atoms.get_forces()                # a miss: one teacher call, stored
    ... the same structure again (this run or a later one)   # a hit: no teacher call

Every structure the teacher labels (energy, forces, and stress for periodic cells) is appended to
an mlffd dataset (`mlffd info` reads it), keyed by a hash of its exact atomic numbers, positions,
cell and pbc. The property suite is deterministic (seeded rattles and thermostats, ASE's
optimizers), and a hit returns the stored float64 numbers bit for bit, so a second validation
replays the teacher's relaxations and trajectories from the file, and a killed one resumes where
it stopped: both spend teacher calls only on structures never seen before. The dataset writer
commits frame by frame, so `kill -9` loses at most the call in flight.

One file holds one teacher (name and version are checked when it is opened for writing); its
default place is `$MLFFD_REFERENCE_DIR`, else `~/.cache/mlffd/reference/`.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from mlffd.errors import MLFFDError
from mlffd.neighbours import periodic_3d


def default_cache_dir() -> Path:
    env = os.environ.get("MLFFD_REFERENCE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mlffd" / "reference"


def default_cache_path(teacher: str, system: str) -> Path:
    """`<cache dir>/<teacher>__<system>.h5`; a frozen-model reference (mlffd:PATH) is named by the
    hash of its file, so two models with the same file name never share labels."""
    name = teacher
    if teacher.startswith("mlffd:"):
        digest = hashlib.sha256(Path(teacher[len("mlffd:"):]).read_bytes()).hexdigest()[:12]
        name = f"mlffd-{digest}"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{name}__{system}").strip("_")
    return default_cache_dir() / f"{safe}.h5"


def structure_key(atoms) -> str:
    """sha256 of the exact numbers, positions, cell and pbc (what the teacher's answer depends on)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(atoms.numbers, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(atoms.positions, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(atoms.cell.array, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(atoms.pbc, dtype="u1").tobytes())
    return h.hexdigest()


class CachedReference(Calculator):
    """An ASE calculator that answers from the cache file and asks the teacher only on a miss.

    `teacher` is a reference name (see `mlffd.reference.load_reference`); it is
    loaded when the cache is opened, so its version can be checked against the file's. `tag`
    (set by the suite while it computes a property) is stored as each new frame's sampler name.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, teacher: str, path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        super().__init__()
        from mlffd.reference import load_reference

        self.path = Path(path)
        self.calls = 0
        self.hits = 0
        self.call_seconds = 0.0
        self.call_atoms = 0
        self.tag = "validate"
        self.inner, self.info = load_reference(teacher, device=device, threads=threads)
        self.teacher_name = self.info["name"]
        self.teacher_version = self.info.get("version") or "unknown"
        self._stored: dict[str, tuple] = {}
        self._writer = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        from mlffd.data.dataset import open_dataset

        ds = open_dataset(self.path)
        meta = ds.metadata
        if meta["teacher_name"] != self.teacher_name or meta["teacher_version"] != self.teacher_version:
            raise MLFFDError(
                f"reference cache {self.path} holds {meta['teacher_name']} ({meta['teacher_version']}), not "
                f"{self.teacher_name} ({self.teacher_version}): pass another --reference-cache or delete it"
            )
        for i, key in enumerate(ds.keys()):
            fr = ds.frame(i)
            self._stored[key] = (fr["energy"], fr["forces"], fr["stress"])

    def __len__(self) -> int:
        return len(self._stored)

    def _open_writer(self):
        if self._writer is None:
            from mlffd.data.writer import DatasetWriter

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = DatasetWriter(self.path, self.teacher_name, self.teacher_version).open()
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "CachedReference":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        key = structure_key(atoms)
        stored = self._stored.get(key)
        if stored is None:
            stored = self._call_teacher(atoms, key)
        else:
            self.hits += 1
        energy, forces, stress = stored
        self.results = {"energy": float(energy), "free_energy": float(energy), "forces": np.array(forces)}
        if stress is not None:
            self.results["stress"] = np.array(stress)

    def _call_teacher(self, atoms, key: str) -> tuple:
        labelled = atoms.copy()
        labelled.calc = self.inner
        start = time.perf_counter()
        energy = float(labelled.get_potential_energy())
        forces = np.asarray(labelled.get_forces(), dtype=np.float64)
        stress = np.asarray(labelled.get_stress(voigt=True), dtype=np.float64) if periodic_3d(labelled) else None
        self.call_seconds += time.perf_counter() - start
        self.call_atoms += len(atoms)
        self.calls += 1
        self._open_writer().append(labelled, sampler=self.tag[:16], temperature=0.0, seed=0, key=key,
                                   energy=energy, forces=forces, stress=stress)
        stored = (energy, forces, stress)
        self._stored[key] = stored
        return stored
