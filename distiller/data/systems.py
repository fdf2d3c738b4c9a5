"""Starting structures: built-in crystals or any file ASE can read, validated before use.

A system spec is a built-in name (`si`, `cu`, `sio2`, ...), optionally with a supercell
(`si:1x1x1`, `cu:3x3x3`), or a path to a structure file (every image in it is used in turn), or
`FILE@N` for the file's structure N alone (counted from 0), e.g. one polymorph of several.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from mlffd.errors import MLFFDError
from mlffd.neighbours import MIN_DISTANCE, check_cell  # MIN_DISTANCE (A): closer atoms are refused


def _si():
    from ase.build import bulk

    return bulk("Si", "diamond", a=5.431, cubic=True)  # 8 atoms


def _ge():
    from ase.build import bulk

    return bulk("Ge", "diamond", a=5.658, cubic=True)  # 8 atoms


def _cu():
    from ase.build import bulk

    return bulk("Cu", "fcc", a=3.615, cubic=True)  # 4 atoms


def _al():
    from ase.build import bulk

    return bulk("Al", "fcc", a=4.05, cubic=True)  # 4 atoms


def _sio2():
    from ase.spacegroup import crystal

    # alpha quartz, P3_221 (154): a = 4.913 A, c = 5.405 A, Si x=0.4697, O (0.4135, 0.2669,
    # 0.1191) (Levien et al. 1980), z shifted by 2/3 for ASE's origin: SiO4 tetrahedra, Si-O 1.60-1.61 A
    return crystal(
        ["Si", "O"],
        basis=[(0.4697, 0.0, 2.0 / 3.0), (0.4135, 0.2669, 0.1191 + 2.0 / 3.0)],
        spacegroup=154,
        cellpar=[4.913, 4.913, 5.405, 90, 90, 120],
    )  # 9 atoms


def _licoo2():
    from ase.spacegroup import crystal

    # layered LiCoO2, R-3m (166), hexagonal setting: a = 2.816 A, c = 14.05 A, Li 3a (0,0,0),
    # Co 3b (0,0,1/2), O 6c (0,0,0.2396) (Akimoto, Gotoh, Oosawa, J. Solid State Chem. 141, 298
    # (1998)): Co-O 1.92 A, Li-O 2.09 A; Li moves within its layers (a mobile-ion ternary)
    return crystal(["Li", "Co", "O"], basis=[(0, 0, 0), (0, 0, 0.5), (0, 0, 0.2396)], spacegroup=166,
                   cellpar=[2.816, 2.816, 14.05, 90, 90, 120])  # 12 atoms


# name -> (builder, default supercell, description)
BUILTIN_SYSTEMS = {
    "si": (_si, (2, 2, 2), "diamond Si, a=5.431 A, 2x2x2 conventional cells (64 atoms)"),
    "cu": (_cu, (2, 2, 2), "fcc Cu, a=3.615 A, 2x2x2 conventional cells (32 atoms)"),
    "sio2": (_sio2, (2, 2, 1), "alpha quartz SiO2, 2x2x1 hexagonal cells (36 atoms)"),
    "ge": (_ge, (2, 2, 2), "diamond Ge, a=5.658 A, 2x2x2 conventional cells (64 atoms)"),
    "al": (_al, (2, 2, 2), "fcc Al, a=4.05 A, 2x2x2 conventional cells (32 atoms)"),
    "licoo2": (_licoo2, (2, 2, 1), "layered LiCoO2 (R-3m), 2x2x1 hexagonal cells (48 atoms)"),
}

# Primitive cells of the built-ins whose unit cell above is a conventional (non-primitive) one, at
# the same lattice constant: phonon bands are read in the primitive cell's Brillouin zone.
PRIMITIVE_CELLS = {
    "si": lambda: _bulk_primitive("Si", "diamond", 5.431),
    "ge": lambda: _bulk_primitive("Ge", "diamond", 5.658),
    "cu": lambda: _bulk_primitive("Cu", "fcc", 3.615),
    "al": lambda: _bulk_primitive("Al", "fcc", 4.05),
}


def _bulk_primitive(symbol: str, structure: str, a: float) -> Atoms:
    from ase.build import bulk

    return bulk(symbol, structure, a=a)


# The built-in that a model with exactly these elements was most likely distilled on.
_BUILTIN_BY_ELEMENTS = {("Si",): "si", ("Cu",): "cu", ("Ge",): "ge", ("Al",): "al", ("O", "Si"): "sio2",
                        ("Co", "Li", "O"): "licoo2"}


def builtin_for_elements(elements) -> str | None:
    return _BUILTIN_BY_ELEMENTS.get(tuple(sorted(elements)))


_SPEC = re.compile(r"^([a-z0-9_]+)(?::(\d+)x(\d+)x(\d+))?$")
_ONE_STRUCTURE = re.compile(r"^(.+)@(\d+)$")  # FILE@N


@dataclass
class System:
    """A named set of starting structures (a built-in has one image)."""

    name: str  # used in frame keys
    images: list[Atoms]
    source: str
    from_file: bool = False  # a user's structure file (built-ins come with their own supercell)

    @property
    def symbols(self) -> set[str]:
        out: set[str] = set()
        for a in self.images:
            out.update(a.get_chemical_symbols())
        return out


def min_distance(atoms: Atoms) -> float:
    """Shortest interatomic distance (periodic images included), inf for one isolated atom."""
    from ase.neighborlist import neighbor_list

    if len(atoms) == 0:
        return float("inf")
    pbc = atoms.pbc & (atoms.cell.lengths() > 0)
    a = atoms.copy()
    a.pbc = pbc
    d = neighbor_list("d", a, MIN_DISTANCE + 1e-9)
    return float(d.min()) if len(d) else float("inf")


def validate_atoms(atoms: Atoms, where: str, elements: set[str] | None = None, teacher: str = "") -> None:
    """Refuse empty structures, non-finite positions, atoms closer than 0.5 A, uncovered elements."""
    if len(atoms) == 0:
        raise MLFFDError(f"{where}: structure has no atoms")
    pos = atoms.get_positions()
    if not np.isfinite(pos).all():
        raise MLFFDError(f"{where}: structure has non-finite (NaN/inf) positions")
    if not np.isfinite(atoms.cell[:]).all():
        raise MLFFDError(f"{where}: cell has non-finite values")
    try:
        check_cell(atoms.cell.array, atoms.pbc)
    except MLFFDError as exc:
        raise MLFFDError(f"{where}: {exc}") from None
    d = min_distance(atoms)
    if d < MIN_DISTANCE:
        raise MLFFDError(f"{where}: atoms closer than {MIN_DISTANCE} A (shortest distance {d:.3f} A)")
    if elements is not None:
        missing = sorted(set(atoms.get_chemical_symbols()) - set(elements), key=chemical_symbols.index)
        if missing:
            who = f"teacher {teacher}" if teacher else "the teacher"
            raise MLFFDError(f"{where}: {who} does not cover element(s) {', '.join(missing)}")


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "system"
    return name[:40]


def load_system(spec: str) -> System:
    """A built-in system name (with optional `:AxBxC` supercell) or an ASE-readable file."""
    m = _SPEC.match(spec.lower())
    if m and m.group(1) in BUILTIN_SYSTEMS:
        builder, rep, _ = BUILTIN_SYSTEMS[m.group(1)]
        if m.group(2):
            rep = tuple(int(m.group(i)) for i in (2, 3, 4))
            if min(rep) < 1 or int(np.prod(rep)) > 1000:
                raise MLFFDError(f"system {spec!r}: supercell must be 1..1000 cells")
        atoms = builder().repeat(rep)
        name = m.group(1) if not m.group(2) else f"{m.group(1)}{rep[0]}x{rep[1]}x{rep[2]}"
        validate_atoms(atoms, f"system {spec}")
        return System(name=name, images=[atoms], source=f"built-in {m.group(1)} {rep}")
    path, index = Path(spec), None
    one = _ONE_STRUCTURE.match(spec)
    if not path.exists() and one and Path(one.group(1)).exists():
        path, index = Path(one.group(1)), int(one.group(2))
    if not path.exists():
        known = ", ".join(BUILTIN_SYSTEMS)
        raise MLFFDError(f"unknown system {spec!r}: not a built-in ({known}) and no such file")
    if path.is_dir():
        raise MLFFDError(f"system {spec!r} is a directory, not a structure file")
    if path.stat().st_size == 0:
        raise MLFFDError(f"structure file {spec} is empty")
    import ase.io
    from ase.io.formats import UnknownFileTypeError

    try:
        images = ase.io.read(str(path), index=":")
    except UnknownFileTypeError as exc:
        raise MLFFDError(f"cannot read structure file {spec}: ASE does not know the file type {str(exc)!r}; "
                         "give a structure file ASE reads (.xyz, .extxyz, .cif, POSCAR, ...)") from None
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for unreadable files
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MLFFDError(f"cannot read structure file {spec}: {msg}") from None
    if isinstance(images, Atoms):
        images = [images]
    if not images:
        raise MLFFDError(f"structure file {spec} holds no structures")
    numbers = range(len(images))
    if index is not None:
        if index >= len(images):
            raise MLFFDError(f"system {spec!r}: {path} holds {len(images)} structure(s), numbered 0 to "
                             f"{len(images) - 1}")
        images, numbers = images[index:index + 1], [index]
    clean = []
    for i, a in zip(numbers, images):
        validate_atoms(a, f"{path} (structure {i})")
        b = Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc)
        clean.append(b)
    if index is None:
        return System(name=_safe_name(path.stem), images=clean, source=str(path), from_file=True)
    return System(name=_safe_name(f"{path.stem}_{index}"), images=clean, source=f"{path}@{index}", from_file=True)


def load_one_structure(spec: str, stage: str) -> System:
    """`load_system` for a stage that takes one structure: a file of several is refused, naming the
    `FILE@N` specs that pick one."""
    system = load_system(spec)
    if len(system.images) > 1:
        raise MLFFDError(f"{spec} holds {len(system.images)} structures and {stage} takes one: give "
                         f"{spec}@0 ... {spec}@{len(system.images) - 1}")
    return system


def structure_specs(spec: str) -> list[str]:
    """One spec per structure of `spec`: `FILE@N` for each of a file's several structures, else the
    spec itself (a built-in, a file of one structure, or already `FILE@N`)."""
    system = load_system(spec)
    if not system.from_file or len(system.images) == 1:
        return [spec]
    return [f"{spec}@{i}" for i in range(len(system.images))]


def periodic_widths(atoms: Atoms) -> dict[int, float]:
    """Width of the cell along each periodic direction i: the distance of cell vector i from the
    span of the other periodic vectors (between opposite faces in 3D); open directions are left out."""
    periodic = [i for i in range(3) if atoms.pbc[i]]
    widths = {}
    for i in periodic:
        vector = np.asarray(atoms.cell[i], dtype=float)
        others = np.array([atoms.cell[j] for j in periodic if j != i], dtype=float).reshape(-1, 3)
        if len(others):
            coef, *_ = np.linalg.lstsq(others.T, vector, rcond=None)
            vector = vector - others.T @ coef
        widths[i] = float(np.linalg.norm(vector))
    return widths


def supercell_repeats(atoms: Atoms, min_width: float) -> tuple[int, int, int]:
    """The fewest repeats along each periodic direction that make every periodic width at least
    `min_width`: with the student's cutoff, no atom then sees its own periodic image."""
    repeats = [1, 1, 1]
    for i, width in periodic_widths(atoms).items():
        repeats[i] = max(1, int(np.ceil(min_width / width - 1e-9)))
    return tuple(repeats)


def with_supercells(system: System, min_width: float) -> tuple[System, str | None]:
    """A structure file's images repeated by `supercell_repeats` (built-ins keep their own
    supercell), and a line saying what was chosen (None when nothing was repeated). A repeated
    system is renamed (`<name>_2x2x2`, or `<name>_w5` when the images' repeats differ), so its frame
    keys never meet those of the cell as given."""
    if not system.from_file:
        return system, None
    repeats = [supercell_repeats(a, min_width) for a in system.images]
    if all(r == (1, 1, 1) for r in repeats):
        return system, None
    images = [a.repeat(r) for a, r in zip(system.images, repeats)]
    tag = "x".join(map(str, repeats[0])) if len(set(repeats)) == 1 else f"w{min_width:g}"
    chosen = ", ".join(f"{'x'.join(map(str, r))} ({len(a)} -> {len(b)} atoms)"
                       for r, a, b in zip(repeats, system.images, images))
    line = (f"system {system.source}: repeated {chosen} so that every periodic width is at least "
            f"{min_width:g} A (the student's cutoff)")
    return System(f"{system.name}_{tag}", images, system.source, from_file=True), line


def load_systems(specs: list[str]) -> list[System]:
    systems = [load_system(s) for s in specs]
    names = [s.name for s in systems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MLFFDError(f"system name(s) given twice: {', '.join(dup)}")
    return systems
