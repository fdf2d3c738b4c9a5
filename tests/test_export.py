"""The frozen artifact: same numbers as the training-time model, metadata checked on load."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlffd import MLFFDCalculator
from mlffd.errors import MLFFDError
from mlffd.model.student import StudentConfig, StudentPotential
from mlffd.neighbours import neighbour_graph
from mlffd.export.contract import FORMAT_VERSION, METADATA_JSON, read_metadata
from mlffd.export.freeze import freeze


def trained_like_model(seed=0, pair_repulsion=False):
    torch.manual_seed(seed)
    config = StudentConfig(elements=["O", "Si"], cutoff=4.5, num_interactions=2, channels=8, lmax=2,
                           pair_repulsion=pair_repulsion, radial_hidden=16, mlp_hidden=16, avg_num_neighbors=12.0,
                           atomic_energies=[-4.0, -5.0], energy_scale=0.7)
    return StudentPotential(config)


def random_structure(seed):
    rng = np.random.default_rng(seed)
    atoms = bulk("Si", "diamond", 5.43, cubic=True).repeat((1, 1, 2))
    atoms.set_cell(atoms.cell.array + rng.normal(0, 0.3, (3, 3)), scale_atoms=True)  # triclinic
    atoms.rattle(0.08, seed=seed)
    atoms.numbers[rng.choice(len(atoms), 5, replace=False)] = 8
    return atoms


def reference_results(model, atoms, dtype):
    model = model.to(dtype)
    edge_index, edge_vec = neighbour_graph(atoms.positions, atoms.cell.array, atoms.pbc, model.cutoff)
    species = torch.tensor([0 if z == 8 else 1 for z in atoms.numbers])
    out = model(torch.from_numpy(edge_vec), species, torch.from_numpy(edge_index), len(atoms))
    stress = -out["virial"].double().numpy() / atoms.get_volume()
    return float(out["energy"]), out["forces"].double().numpy(), stress.flat[[0, 4, 8, 5, 2, 1]]


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("pair_repulsion, use_ops", [(False, False), (True, False), (True, True)])
def test_exported_equals_training_model(tmp_path, dtype, tol, pair_repulsion, use_ops):
    """The frozen model against the training model; with the ZBL wall on compressed cells, where the
    custom-ops export computes the wall's forces and virial in closed form instead of by autograd."""
    if use_ops:
        tol = max(tol, 1e-6)  # the radial tables' interpolation error
    model = trained_like_model(pair_repulsion=pair_repulsion)
    path = tmp_path / "model.pt"
    freeze(model, path, dtype=dtype, use_ops=use_ops)
    calc = MLFFDCalculator(str(path))
    for seed in range(3):
        atoms = random_structure(seed)
        if pair_repulsion:  # Si-O pairs inside their covalent distance: the wall is in the numbers
            atoms.set_cell(atoms.cell.array * 0.8, scale_atoms=True)
        energy, forces, stress = reference_results(trained_like_model(pair_repulsion=pair_repulsion), atoms,
                                                   getattr(torch, dtype))
        atoms.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(energy, rel=tol)
        scale = np.abs(forces).max() + 1e-2  # float32 rounding is relative to the edge terms, not the net force
        np.testing.assert_allclose(atoms.get_forces(), forces, atol=tol * scale)
        np.testing.assert_allclose(atoms.get_stress(), stress, atol=tol * np.abs(stress).max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
def test_cuda_calculator_equals_training_model(tmp_path, dtype, tol):
    """The same .pt (custom ops, CUDA kernels) on the GPU: exported on the CPU and loaded onto cuda,
    and exported with --device cuda, against the training-time model."""
    on_cpu, on_cuda = tmp_path / "cpu.pt", tmp_path / "cuda.pt"
    freeze(trained_like_model(), on_cpu, dtype=dtype, use_ops=True)
    freeze(trained_like_model(), on_cuda, dtype=dtype, device="cuda", use_ops=True)
    for path in (on_cpu, on_cuda):
        calc = MLFFDCalculator(str(path), device="cuda")
        for seed in range(2):
            atoms = random_structure(seed)
            energy, forces, stress = reference_results(trained_like_model(), atoms, torch.float64)
            atoms.calc = calc
            assert atoms.get_potential_energy() == pytest.approx(energy, rel=tol)
            scale = np.abs(forces).max() + 1e-2
            np.testing.assert_allclose(atoms.get_forces(), forces, atol=tol * scale)
            np.testing.assert_allclose(atoms.get_stress(), stress, atol=tol * np.abs(stress).max())


def test_fresh_process_gives_identical_results(tmp_path):
    """The same numbers in a fresh process, to float64 round-off: bit-for-bit is not promised, as
    the BLAS's summation order can follow the memory alignment of a process's buffers (measured:
    two processes on this machine differ by 5e-12 eV in 74 eV and 6e-13 eV/A)."""
    path = tmp_path / "model.pt"
    freeze(trained_like_model(), path, dtype="float64", use_ops=False)
    atoms = random_structure(4)
    atoms.calc = MLFFDCalculator(str(path))
    here = np.concatenate([[atoms.get_potential_energy()], atoms.get_forces().ravel(), atoms.get_stress()])
    atoms.write(tmp_path / "s.traj")
    script = (
        "import sys, numpy as np; from ase.io import read; from mlffd import MLFFDCalculator\n"
        f"a = read(r'{tmp_path / 's.traj'}'); a.calc = MLFFDCalculator(r'{path}')\n"
        "v = np.concatenate([[a.get_potential_energy()], a.get_forces().ravel(), a.get_stress()])\n"
        "sys.stdout.write(repr(v.tolist()))"
    )
    there = np.array(eval(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout))
    np.testing.assert_allclose(here, there, rtol=1e-10, atol=1e-11)


def test_metadata_inside_the_file(tmp_path):
    path = tmp_path / "model.pt"
    freeze(trained_like_model(), path, dtype="float32", use_ops=False, teacher={"name": "sevennet-0", "version": "x"},
           dataset_fingerprint="abc")
    meta = read_metadata(path)
    assert meta["elements"] == ["O", "Si"] and meta["cutoff"] == 4.5 and meta["num_interactions"] == 2
    assert meta["dtype"] == "float32" and meta["teacher"]["name"] == "sevennet-0"
    assert meta["dataset_fingerprint"] == "abc" and meta["format_version"] == FORMAT_VERSION
    info = subprocess.run([sys.executable, "-m", "mlffd.cli", "info", str(path), "--json"], capture_output=True,
                          text=True, check=True)
    assert json.loads(info.stdout)["elements"] == ["O", "Si"]


def test_the_cpp_host_reads_the_contract_from_the_one_source(tmp_path):
    """The plugin's constants come from export/contract.py (a generated header), not restated by hand."""
    import re

    from mlffd.export import contract
    from mlffd.lammps_plugin.build import SOURCE_DIR
    from mlffd.neighbours import MIN_DISTANCE
    from mlffd.voigt import TO_LAMMPS

    header = tmp_path / "mlffd_contract.h"
    subprocess.run([sys.executable, "-m", "mlffd.export.contract", str(header)], check=True)
    text = header.read_text()
    values = dict(re.findall(r"(MLFFD_\w+) = \"?([^\";]+)\"?;", text))
    assert values == {"MLFFD_FORMAT": contract.FORMAT, "MLFFD_FORMAT_VERSION": str(contract.FORMAT_VERSION),
                      "MLFFD_OLDEST_FORMAT_VERSION": str(contract.OLDEST_FORMAT_VERSION),
                      "MLFFD_METADATA_TXT": contract.METADATA_TXT, "MLFFD_MIN_DISTANCE": repr(MIN_DISTANCE),
                      "MLFFD_ASE_VOIGT_FORMAT": str(contract.ASE_VOIGT_FORMAT)}
    permutation = re.search(r"MLFFD_ATOM_VIRIAL_TO_LAMMPS\[6\] = \{([^}]*)\};", text).group(1)
    assert tuple(int(k) for k in permutation.split(",")) == TO_LAMMPS
    source = (SOURCE_DIR / "src" / "pair_mlffd.cpp").read_text()
    assert '#include "mlffd_contract.h"' in source
    assert not re.search(r"MLFFD_(FORMAT|FORMAT_VERSION|OLDEST_FORMAT_VERSION|METADATA_TXT|MIN_DISTANCE|ASE_VOIGT_FORMAT|"
                         r"ATOM_VIRIAL_TO_LAMMPS(\[6\])?) =", source)
    stamp = header.stat().st_mtime_ns
    contract.write_cpp_header(header)  # unchanged contract: the file is left alone (nothing recompiles)
    assert header.stat().st_mtime_ns == stamp


def test_refuses_foreign_and_newer_files(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    with pytest.raises(MLFFDError, match="not an mlffd model"):
        MLFFDCalculator(str(plain))
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(MLFFDError, match="not an mlffd model"):
        MLFFDCalculator(str(text))
    newer = tmp_path / "newer.pt"
    freeze(trained_like_model(), newer, use_ops=False)
    _with_format_version(newer, tmp_path / "newer2.pt", FORMAT_VERSION + 1)
    with pytest.raises(MLFFDError, match="newer"):
        MLFFDCalculator(str(tmp_path / "newer2.pt"))


def _with_format_version(model: Path, out: Path, version: int) -> None:
    """A copy of the frozen `model` whose metadata claims format `version`."""
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(METADATA_JSON):
                data = json.dumps(dict(json.loads(data), format_version=version)).encode()
            dst.writestr(item, data)


def test_format_1_files_are_refused_in_one_line(tmp_path):
    """Files of the first format (positions in, no radial tables) get one line saying to re-export."""
    model = tmp_path / "model.pt"
    freeze(trained_like_model(), model, use_ops=False)
    _with_format_version(model, tmp_path / "old.pt", 1)
    with pytest.raises(MLFFDError, match=r"format version 1 .*re-export it from its checkpoint") as info:
        MLFFDCalculator(str(tmp_path / "old.pt"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("use_ops", [False, True])
def test_skin_list_md_equals_fresh_lists(tmp_path, use_ops):
    """MLFFDCalculator reuses a cutoff + skin list across MD steps (pairs beyond the cutoff get zero
    weight): along 60 steps of 1000 K MD the forces equal those from a fresh cutoff list every step."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    path = tmp_path / "model.pt"
    freeze(trained_like_model(), path, dtype="float64", use_ops=use_ops)
    atoms = random_structure(3)
    MaxwellBoltzmannDistribution(atoms, temperature_K=1000, rng=np.random.default_rng(0))
    atoms.calc = MLFFDCalculator(str(path), skin=0.3)
    fresh = MLFFDCalculator(str(path), skin=0.0)
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    for _ in range(6):
        dyn.run(10)
        probe = atoms.copy()
        probe.calc = fresh
        np.testing.assert_allclose(atoms.get_forces(), probe.get_forces(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(atoms.get_stress(), probe.get_stress(), rtol=0, atol=1e-12)
        assert atoms.get_potential_energy() == pytest.approx(probe.get_potential_energy(), rel=1e-13)
    builds = atoms.calc._neighbours.builds
    # 61 force calls at 1000 K: rebuilt when an atom has moved skin / 2 (6 builds measured), not every step
    assert 2 <= builds <= 12, builds


def test_state_check_recomputes_exactly_when_ase_would(tmp_path):
    """The calculator's cheap state check: results are reused while positions, numbers, cell, pbc,
    charges and magmoms are unchanged (momenta may change, as in MD), and recomputed otherwise."""
    path = tmp_path / "model.pt"
    freeze(trained_like_model(), path, dtype="float64", use_ops=True)
    atoms = random_structure(4)
    atoms.calc = MLFFDCalculator(str(path))
    forces = atoms.get_forces()
    calls = []
    original = atoms.calc.calculate
    atoms.calc.calculate = lambda *a, **k: (calls.append(1), original(*a, **k))
    atoms.set_momenta(np.ones((len(atoms), 3)))
    assert atoms.calc.check_state(atoms) == []
    np.testing.assert_array_equal(atoms.get_forces(), forces)
    assert calls == []
    changes = {
        "positions": lambda a: a.positions.__setitem__((0, 0), a.positions[0, 0] + 1e-9),
        "numbers": lambda a: a.numbers.__setitem__(1, 8 if a.numbers[1] == 14 else 14),
        "cell": lambda a: a.set_cell(a.cell.array * 1.001, scale_atoms=False),
        "pbc": lambda a: a.set_pbc([True, True, False]),
        "initial_charges": lambda a: a.set_initial_charges(np.full(len(a), 0.1)),
    }
    for name, change in changes.items():
        probe = atoms.copy()
        change(probe)
        assert name in atoms.calc.check_state(probe), name
    atoms.positions[0, 0] += 1e-9
    atoms.get_forces()
    assert len(calls) == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_translation_far_from_the_origin(tmp_path, dtype):
    """Edge vectors are formed from float64 positions, so a float32 model gives the same forces
    1000 A from the origin as at it (before format 2 they changed by ~5e-4 eV/A)."""
    path = tmp_path / "model.pt"
    freeze(trained_like_model(), path, dtype=dtype, use_ops=True)
    calc = MLFFDCalculator(str(path))
    atoms = random_structure(5)
    atoms.calc = calc
    forces, energy, stress = atoms.get_forces(), atoms.get_potential_energy(), atoms.get_stress()
    far = atoms.copy()
    far.positions += [1000.0, -1000.0, 1000.0]
    far.calc = MLFFDCalculator(str(path))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(far.get_forces(), forces, rtol=0, atol=tol * np.abs(forces).max())
    np.testing.assert_allclose(far.get_stress(), stress, rtol=0, atol=tol * np.abs(stress).max())
    assert far.get_potential_energy() == pytest.approx(energy, rel=1e-6 if dtype == "float32" else 1e-13)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a machine without CUDA")
def test_cuda_requests_without_cuda_are_refused(tmp_path):
    model = tmp_path / "ops.pt"
    freeze(trained_like_model(), model, use_ops=True)
    with pytest.raises(MLFFDError, match="no CUDA device"):
        MLFFDCalculator(str(model), device="cuda")
    with pytest.raises(MLFFDError, match="built without them"):  # this op library has no CUDA kernels
        freeze(trained_like_model(), tmp_path / "cuda.pt", device="cuda", use_ops=True)


def test_bad_structures_get_clear_errors(demo_model_factory):
    from ase import Atoms

    calc = MLFFDCalculator(str(demo_model_factory(("Si",))))
    atoms = bulk("Cu", "fcc", 3.6)
    atoms.calc = calc
    with pytest.raises(MLFFDError, match="Cu not in the model.*Si"):
        atoms.get_potential_energy()
    atoms = bulk("Si", "diamond", 5.43)
    atoms.positions[0, 0] = np.nan
    atoms.calc = calc
    with pytest.raises(MLFFDError, match="NaN"):
        atoms.get_potential_energy()
    atoms = Atoms("Si2", positions=[[0, 0, 0], [0.2, 0, 0]])
    atoms.calc = calc
    with pytest.raises(MLFFDError, match="overlap"):
        atoms.get_potential_energy()


def test_small_cells_and_non_periodic(demo_model_factory):
    """A 2-atom cell (cutoff > half the box: many images) equals the same crystal as a supercell."""
    calc = MLFFDCalculator(str(demo_model_factory(("Si",))))
    primitive = bulk("Si", "diamond", 5.43)
    primitive.rattle(0.05, seed=1)
    primitive.calc = calc
    e_small = primitive.get_potential_energy() / len(primitive)
    supercell = primitive.repeat((3, 3, 3))
    supercell.calc = calc
    assert supercell.get_potential_energy() / len(supercell) == pytest.approx(e_small, rel=1e-12)
    np.testing.assert_allclose(supercell.get_stress(), primitive.get_stress(), atol=1e-12)
    cluster = bulk("Si", "diamond", 5.43, cubic=True)
    cluster.pbc = False
    cluster.center(vacuum=5.0)
    cluster.calc = calc
    assert np.isfinite(cluster.get_potential_energy())
    np.testing.assert_allclose(cluster.get_forces().sum(0), 0.0, atol=1e-12)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_calculator_under_no_grad_and_inference_mode(demo_model_factory, mode):
    """Scripts that drive several models often wrap them in torch.no_grad() or
    torch.inference_mode(): the calculator switches autograd on for itself (its forces are a
    gradient), built inside the mode or outside, and leaves the caller's mode as it was."""
    model = str(demo_model_factory(("Si",)))
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.05, seed=3)
    atoms.calc = MLFFDCalculator(model)
    want = [atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(), atoms.get_potential_energies()]
    assert np.abs(want[1]).max() > 1e-5
    context = getattr(torch, mode)
    outside = MLFFDCalculator(model)
    with context():
        for calc in (outside, MLFFDCalculator(model)):
            copy = atoms.copy()
            copy.calc = calc
            got = [copy.get_potential_energy(), copy.get_forces(), copy.get_stress(), copy.get_potential_energies()]
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
        assert not torch.is_grad_enabled()
        assert torch.is_inference_mode_enabled() == (mode == "inference_mode")


@pytest.mark.parametrize("cell, pbc", [
    (np.diag([5.43, 5.43, 0.0]), True),                       # a zero vector
    ([[5.43, 0, 0], [5.43, 0, 0], [0, 0, 5.43]], True),       # two equal vectors (vesin: "not invertible")
    ([[5.43, 0, 0], [2.7, 1e-9, 0], [0, 0, 5.43]], True),     # numerically flat
    ([[5.43, 0, 0], [5.43, 0, 0], [0, 0, 20.0]], [True, True, False]),  # degenerate slab (vesin: SIGFPE)
])
def test_zero_volume_periodic_cells_are_refused(demo_model_factory, cell, pbc):
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.set_cell(cell)
    atoms.pbc = pbc
    atoms.calc = MLFFDCalculator(str(demo_model_factory(("Si",))))
    with pytest.raises(MLFFDError, match=r"^the periodic cell has zero volume: .*atoms\.set_cell"):
        atoms.get_potential_energy()


def test_slab_with_zero_vector_along_the_open_direction(demo_model_factory):
    """Only the periodic vectors must span the cell: a slab periodic in a, b whose c vector is zero
    gives the numbers of the same slab with any c."""
    calc = MLFFDCalculator(str(demo_model_factory(("Si",))))
    slab = bulk("Si", "diamond", 5.43, cubic=True)
    slab.rattle(0.05, seed=2)
    slab.pbc = [True, True, False]
    results = []
    for c in (0.0, 20.0):
        slab.set_cell([[5.43, 0, 0], [0, 5.43, 0], [0, 0, c]])
        slab.calc = calc
        results.append((slab.get_potential_energy(), slab.get_forces().copy()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-13)
    np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-13)
