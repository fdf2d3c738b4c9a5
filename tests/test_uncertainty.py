"""The frozen model's per-atom uncertainty (issue 31): the squared Mahalanobis distance of each atom's
descriptor (the last update MLP's hidden features) to the training atoms', over its dimension."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlffd.calculator import MLFFDCalculator, UncertaintyWarning
from mlffd.errors import MLFFDError
from mlffd.export.contract import read_metadata


def cu(a: float = 3.59, rattle: float = 0.05, seed: int = 1):
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(2)
    atoms.positions += np.random.default_rng(seed).normal(0.0, rattle, atoms.positions.shape)
    return atoms


def uncertainties(model, atoms, **kwargs) -> np.ndarray:
    atoms = atoms.copy()
    atoms.calc = MLFFDCalculator(str(model), **kwargs)
    return atoms.calc.get_property("uncertainties", atoms)


def test_uncertainty_is_near_one_on_training_like_atoms_and_grows_far_from_them(emt_cu_student):
    meta = read_metadata(emt_cu_student)["uncertainty"]
    assert meta["measure"] == "descriptor_mahalanobis" and meta["training_atoms"] > meta["dimension"]
    assert 0.1 < meta["train_quantiles"]["median"] < 1.5  # the mean over the training atoms is 1 (a skewed distribution)
    near = uncertainties(emt_cu_student, cu())
    squeezed = uncertainties(emt_cu_student, cu(a=3.15, rattle=0.15))  # 12 % shorter bonds, hot
    assert np.median(near) < 3.0
    assert squeezed.min() > 10 * np.median(near) and squeezed.max() > meta["train_quantiles"]["max"]


def test_custom_ops_give_the_reference_uncertainty(emt_cu_student, tmp_path):
    from mlffd.export.freeze import export_checkpoint

    fused = tmp_path / "cu_ops.pt"
    export_checkpoint(emt_cu_student.parent / "run", fused, dtype="float64", use_ops=True)
    atoms = cu(a=3.4, rattle=0.1)
    np.testing.assert_allclose(uncertainties(fused, atoms), uncertainties(emt_cu_student, atoms), rtol=1e-8)


def test_export_without_uncertainty_gives_the_same_energies_and_no_uncertainty(emt_cu_student, tmp_path):
    """The off switch: `mlffd export --no-uncertainty` freezes the same student without the
    statistics; its energies and forces are the ones with it, and it says it carries none."""
    import subprocess
    import sys

    off = tmp_path / "off.pt"
    done = subprocess.run([sys.executable, "-m", "mlffd.cli", "export", str(emt_cu_student.parent / "run"), "-o",
                           str(off), "--no-uncertainty", "--no-ops"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not read_metadata(off).get("uncertainty")
    atoms, reference = cu(a=3.5, rattle=0.08), cu(a=3.5, rattle=0.08)
    atoms.calc, reference.calc = MLFFDCalculator(str(off)), MLFFDCalculator(str(emt_cu_student))
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), rtol=1e-10, atol=1e-12)
    assert "uncertainties" not in atoms.calc.results
    with pytest.raises(MLFFDError, match="carries no uncertainty"):
        atoms.calc.get_property("uncertainty", atoms)


def test_a_model_without_statistics_loads_and_says_it_has_no_uncertainty(demo_model_factory):
    model = demo_model_factory(("Cu",))
    assert not read_metadata(model).get("uncertainty")
    atoms = cu()
    atoms.calc = MLFFDCalculator(str(model))
    assert np.isfinite(atoms.get_potential_energy()) and "uncertainties" not in atoms.calc.results
    with pytest.raises(MLFFDError, match="carries no uncertainty"):
        atoms.calc.get_property("uncertainty", atoms)
    with pytest.raises(MLFFDError, match="carries no uncertainty.*drop uncertainty_threshold"):
        MLFFDCalculator(str(model), uncertainty_threshold=10.0)


def test_a_model_from_before_the_uncertainty_still_runs(tmp_path):
    """A frozen file whose forward returns no `atom_uncertainty` at all (exported before it existed)
    gives energies and forces, and says it has no uncertainty when asked."""
    from typing import Dict

    from mlffd.export.freeze import freeze
    from mlffd.model.student import StudentConfig, StudentPotential

    class OldOutputs(StudentPotential):
        def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                    n_local: int) -> Dict[str, torch.Tensor]:
            out = self.compute(self.edge_vectors(edge_vec), species, edge_index, n_local, False)
            return {"energy": out["energy"].detach(), "atom_energy": out["atom_energy"].detach(),
                    "forces": out["forces"], "virial": out["virial"], "atom_virial": out["atom_virial"]}

    config = StudentConfig(elements=["Cu"], cutoff=4.0, num_interactions=1, channels=8, lmax=1, radial_hidden=8,
                           mlp_hidden=8, avg_num_neighbors=10.0, atomic_energies=[-1.0], energy_scale=0.5)
    freeze(OldOutputs(config), tmp_path / "old.pt", use_ops=False)
    atoms = cu()
    atoms.calc = MLFFDCalculator(str(tmp_path / "old.pt"))
    assert np.isfinite(atoms.get_forces()).all() and "uncertainties" not in atoms.calc.results
    with pytest.raises(MLFFDError, match="carries no uncertainty"):
        atoms.calc.get_property("uncertainties", atoms)


def test_the_threshold_warns_or_raises_naming_the_frame_and_atom(emt_cu_student):
    far = cu(a=3.15, rattle=0.15)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncertaintyWarning)
        assert uncertainties(emt_cu_student, cu(), uncertainty_threshold=1e6).max() < 1e6  # quiet below
    with pytest.warns(UncertaintyWarning, match=r"frame 1 \(Cu32\): atom \d+ \(Cu\) has uncertainty .* > threshold 5 "):
        uncertainties(emt_cu_student, far, uncertainty_threshold=5.0)
    far.calc = MLFFDCalculator(str(emt_cu_student), uncertainty_threshold=5.0, on_uncertain="raise")
    for _ in range(2):  # no results are kept for the frame: asking again raises again
        with pytest.raises(MLFFDError, match="the student is extrapolating here"):
            far.get_potential_energy()
    for bad in (0.0, -1.0, float("nan"), "high"):
        with pytest.raises(MLFFDError, match="uncertainty_threshold must be a number > 0"):
            MLFFDCalculator(str(emt_cu_student), uncertainty_threshold=bad)
    with pytest.raises(MLFFDError, match="on_uncertain must be 'warn' or 'raise'"):
        MLFFDCalculator(str(emt_cu_student), on_uncertain="ignore")


def test_training_and_frozen_model_agree_on_energies_with_the_descriptor_path(emt_cu_student):
    """The descriptor split (hidden, then readout) leaves the student's energies as they were: the
    frozen file with uncertainty against the training-time module on the same weights."""
    from mlffd.export.freeze import build_student
    from mlffd.training.checkpoint import read_checkpoint
    from mlffd.training.graphs import build_graphs, collate, predict

    payload = read_checkpoint(emt_cu_student.parent / "run")
    model = build_student(payload, "float64")
    atoms = cu(a=3.5, rattle=0.08)
    frame = {"numbers": atoms.numbers, "positions": atoms.positions, "cell": atoms.cell.array, "pbc": atoms.pbc,
             "energy": 0.0, "forces": np.zeros((len(atoms), 3)), "stress": None, "atom_energies": None,
             "sampler": "rattle"}
    graph = collate(build_graphs([frame], ["Cu"], model.cutoff), torch.float64)
    energy = float(predict(model, graph, create_graph=False)["energy"][0].detach())
    atoms.calc = MLFFDCalculator(str(emt_cu_student))
    assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-12)


# ------------------------------------------------------------------ LAMMPS: fix pair, fix halt


def lammps_uncertainty(plugin, model, atoms, workdir, nprocs=1, extra="", steps=0):
    """Per-atom uncertainty from `fix pair ... mlffd uncertainty 0` at `run 0` (in the order of
    `atoms`), the LAMMPS log and its return code."""
    import subprocess

    from mlffd.lammps_plugin.runner import deck_path, lammps_env, lmp_binary, mpirun_binary, write_data

    write_data(atoms, workdir / "data.lmp", ["Cu"])
    deck = f"""units metal
atom_style atomic
atom_modify map array
read_data data.lmp
plugin load {plugin}
pair_style mlffd
pair_coeff * * {deck_path(model, workdir)} Cu
fix unc all pair 1 mlffd uncertainty 0
compute umax all reduce max f_unc
thermo_style custom step pe c_umax
thermo 1
{extra}
dump d all custom 1 unc.dump id f_unc
dump_modify d sort id format float %.17g
velocity all create 300 1
fix nve all nve
run {steps}
"""
    (workdir / "in.unc").write_text(deck)
    cmd = [str(lmp_binary()), "-in", "in.unc", "-log", "log.lammps", "-screen", "none"]
    if nprocs > 1:
        cmd = [mpirun_binary(), "-np", str(nprocs)] + cmd
    proc = subprocess.run(cmd, cwd=workdir, env=lammps_env(), capture_output=True, text=True, timeout=300)
    log = (workdir / "log.lammps").read_text() if (workdir / "log.lammps").exists() else ""
    values = None
    lines = (workdir / "unc.dump").read_text().splitlines() if (workdir / "unc.dump").exists() else []
    if "ITEM: ATOMS id f_unc" in lines:  # the first frame (step 0)
        start = lines.index("ITEM: ATOMS id f_unc") + 1
        values = np.array([float(ln.split()[1]) for ln in lines[start:start + len(atoms)]])
    return values, log + proc.stdout + proc.stderr, proc.returncode


@pytest.mark.lammps
def test_lammps_gives_the_ase_uncertainty_on_one_and_two_ranks(plugin, emt_cu_student, tmp_path):
    from mlffd.lammps_plugin.runner import lower_triangular

    atoms = lower_triangular(cu(a=3.45, rattle=0.1, seed=3).repeat((2, 1, 1)))
    want = uncertainties(emt_cu_student, atoms)
    for nprocs in (1, 2):
        (tmp_path / str(nprocs)).mkdir()
        got, log, rc = lammps_uncertainty(plugin, emt_cu_student, atoms, tmp_path / str(nprocs), nprocs)
        assert rc == 0, log[-2000:]
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.lammps
def test_fix_halt_stops_a_lammps_run_above_the_threshold(plugin, emt_cu_student, demo_model_factory, tmp_path):
    from mlffd.lammps_plugin.runner import lower_triangular

    far = lower_triangular(cu(a=3.15, rattle=0.15))
    (tmp_path / "halt").mkdir()
    halt = "variable umax equal c_umax\nfix stop all halt 1 v_umax > 50.0 error hard message yes"
    _, log, rc = lammps_uncertainty(plugin, emt_cu_student, far, tmp_path / "halt", extra=halt, steps=20)
    assert rc != 0 and "Fix halt condition for fix-id stop met" in log
    (tmp_path / "old").mkdir()
    _, log, rc = lammps_uncertainty(plugin, demo_model_factory(("Cu",)), far, tmp_path / "old")
    assert rc != 0 and "carries no uncertainty" in log
