"""The teacher registry: listing, offline teachers, stress units, Orb through a local checkpoint."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from ase.build import bulk

from mlffd.cli import main
from mlffd.errors import MLFFDError
from mlffd.teachers import list_teachers, load_teacher, orb_env_var, teacher_info

ORB_NAMES = ["orb-v3-conservative-inf-omat", "orb-v3-direct-20-omat", "orb-v2"]


@pytest.fixture
def no_orb_env(monkeypatch):
    for name in list(ORB_NAMES) + ["orb-v3-conservative-20-omat", "orb-v3-direct-inf-omat"]:
        monkeypatch.delenv(orb_env_var(name), raising=False)
    monkeypatch.delenv("MLFFD_ORB_CHECKPOINT", raising=False)
    monkeypatch.delenv("MLFFD_ORB_CHECKPOINT_DIR", raising=False)


def _si8(rattle=0.05, strain=1.0):
    a = bulk("Si", "diamond", a=5.431 * strain, cubic=True)
    a.rattle(rattle, seed=7)
    return a


def test_teachers_json(capsys, no_orb_env):
    assert main(["teachers", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in ("sevennet-0", "chgnet"):
        assert rows[name]["installed"] and rows[name]["weights_available"] and rows[name]["available"]
        assert rows[name]["conservative"] is True
    assert rows["sevennet-0"]["n_elements"] == 89
    for name in ORB_NAMES:
        assert rows[name]["installed"] is True
        assert rows[name]["weights_available"] is False
        assert orb_env_var(name) in rows[name]["weights"]
    assert rows["orb-v3-conservative-inf-omat"]["conservative"] is True
    assert rows["orb-v3-direct-20-omat"]["conservative"] is False
    assert rows["mace"]["installed"] is False and "not installed" in rows["mace"]["note"]
    assert main(["teachers"]) == 0
    assert "sevennet-0" in capsys.readouterr().out


def test_orb_weights_status_follows_env(tmp_path, monkeypatch, no_orb_env):
    ck = tmp_path / "orb.ckpt"
    ck.write_bytes(b"x")
    monkeypatch.setenv(orb_env_var("orb-v2"), str(ck))
    assert teacher_info("orb-v2")["weights_available"] is True
    assert teacher_info("orb-v3-direct-20-omat")["weights_available"] is False
    monkeypatch.setenv("MLFFD_ORB_CHECKPOINT_DIR", str(tmp_path))
    assert teacher_info("orb-v3-direct-20-omat")["weights_available"] is False  # upstream file name missing


def test_unknown_teacher_and_options(no_orb_env):
    with pytest.raises(MLFFDError, match="unknown teacher 'nope'"):
        load_teacher("nope")
    with pytest.raises(MLFFDError, match="MLFFD_ORB_V3_CONSERVATIVE_INF_OMAT_CHECKPOINT"):
        load_teacher("orb-v3-conservative-inf-omat")
    with pytest.raises(MLFFDError, match="not found"):
        load_teacher("orb-v2", checkpoint="/nonexistent/orb.ckpt")
    with pytest.raises(MLFFDError, match="mace-torch, which is not installed"):
        load_teacher("mace", model_path="x.model")
    assert {r["name"] for r in list_teachers()} >= {"sevennet-0", "chgnet", *ORB_NAMES, "mace"}


def _numerical_stress(calc, atoms, d=1e-4):
    return calc.calculate_numerical_stress(atoms, d=d)


@pytest.mark.parametrize("name", ["sevennet-0", "chgnet"])
def test_offline_teacher_stress_is_ase_convention(name):
    """energy/forces/stress finite, forces = -dE/dx, stress = (1/V) dE/dstrain in eV/A^3."""
    calc = load_teacher(name)
    assert calc.teacher_name == name and calc.conservative
    assert "Si" in calc.elements and calc.teacher_version
    a = _si8(strain=1.02)  # stretched: a clearly non-zero tensile (positive in ASE) stress
    a.calc = calc
    e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
    assert np.isfinite(e) and np.isfinite(f).all() and s.shape == (6,)
    # float32 models: finite differences with a large step, compare the diagonal (+ one shear)
    sn = np.array([_num_stress_component(calc, a, k, 2e-3) for k in (0, 3)])
    np.testing.assert_allclose(s[[0, 3]], sn, atol=1e-3 + 0.05 * np.abs(sn).max())
    assert 0.005 < s[0] < 0.1  # eV/A^3 (in GPa it would be 160x larger)
    h = 2e-3
    b = a.copy()
    b.calc = calc
    b.positions[1, 0] += h
    ep = b.get_potential_energy()
    b.positions[1, 0] -= 2 * h
    em = b.get_potential_energy()
    assert -(ep - em) / (2 * h) == pytest.approx(f[1, 0], abs=0.02 + 0.05 * abs(f[1, 0]))


def _num_stress_component(calc, atoms, k, d):
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    i, j = voigt[k]
    cell = atoms.cell[:].copy()
    vol = atoms.get_volume()
    es = []
    for sign in (1, -1):
        eps = np.eye(3)
        eps[i, j] += sign * d / (1 if i == j else 2)
        if i != j:
            eps[j, i] += sign * d / 2
        b = atoms.copy()
        b.set_cell(cell @ eps, scale_atoms=True)
        b.calc = calc
        es.append(b.get_potential_energy())
    return (es[0] - es[1]) / (2 * d) / vol


def test_element_not_covered():
    calc = load_teacher("chgnet")
    from ase import Atoms

    a = Atoms("Og2", positions=[[0, 0, 0], [0, 0, 3.0]], cell=[10, 10, 10], pbc=True)
    a.calc = calc
    with pytest.raises(MLFFDError, match="does not cover element.*Og"):
        a.get_potential_energy()


def _random_orb(tmp_path, arch):
    import torch
    from orb_models.forcefield import pretrained

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = getattr(pretrained, arch)(device="cpu")
    path = tmp_path / f"{arch}.ckpt"
    torch.save(model.state_dict(), path)
    return str(path)


def test_orb_conservative_random_checkpoint(tmp_path, no_orb_env):
    """A random Orb-v3 conservative checkpoint through the real loader: forces = -grad E,
    stress = (1/V) dE/dstrain (float64 so finite differences are sharp)."""
    import torch

    ck = _random_orb(tmp_path, "orb_v3_conservative_architecture")
    dtype = torch.get_default_dtype()
    calc = load_teacher("orb-v3-conservative-inf-omat", checkpoint=ck, precision="float64")
    assert torch.get_default_dtype() == dtype  # the loader's global dtype change is undone
    assert calc.conservative and "orb-v3-conservative-inf-omat" in calc.teacher_version
    a = _si8(0.1)
    a.calc = calc
    e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
    assert np.isfinite(e) and np.isfinite(f).all() and np.isfinite(s).all()
    h = 1e-4
    for i, k in [(3, 2)]:
        b = a.copy()
        b.calc = calc
        b.positions[i, k] += h
        ep = b.get_potential_energy()
        b.positions[i, k] -= 2 * h
        em = b.get_potential_energy()
        assert -(ep - em) / (2 * h) == pytest.approx(f[i, k], abs=1e-6, rel=1e-5)
    for k in (5,):
        assert _num_stress_component(calc, a, k, 1e-5) == pytest.approx(s[k], abs=1e-7, rel=1e-4)
    # a checkpoint of another architecture is refused clearly
    with pytest.raises(MLFFDError, match="does not fit the orb-v2 architecture"):
        load_teacher("orb-v2", checkpoint=ck)


def test_orb_direct_random_checkpoints(tmp_path, monkeypatch, no_orb_env):
    ck = _random_orb(tmp_path, "orb_v3_direct_architecture")
    monkeypatch.setenv(orb_env_var("orb-v3-direct-20-omat"), ck)  # through the environment
    calc = load_teacher("orb-v3-direct-20-omat")
    assert not calc.conservative
    a = _si8(0.1)
    a.calc = calc
    assert np.isfinite(a.get_potential_energy()) and np.isfinite(a.get_forces()).all()
    assert np.isfinite(a.get_stress()).all()
    ck2 = _random_orb(tmp_path, "orb_v2_architecture")
    calc2 = load_teacher("orb-v2", checkpoint=ck2)
    a.calc = calc2
    assert np.isfinite(a.get_potential_energy()) and np.isfinite(a.get_forces()).all()
    assert np.isfinite(a.get_stress()).all()


def test_a_registered_teacher_is_usable_everywhere(tmp_path):
    """A new teacher is a loader plus one `register_teacher` line: generate and validate find it."""
    from ase.calculators.emt import EMT

    from mlffd.data.dataset import open_dataset
    from mlffd.data.generate import generate_dataset
    from mlffd.teachers.registry import TEACHERS, TeacherCalculator, TeacherSpec, register_teacher

    def load(spec, device, **options):
        return TeacherCalculator(EMT(), spec, "ase EMT")

    register_teacher(TeacherSpec("test-emt", "ase", "ase", True, ("Cu",), "EMT as a teacher (test)", load,
                                 lambda spec: (True, "analytic")))
    try:
        assert teacher_info("test-emt")["available"] is True
        generate_dataset(tmp_path / "d.h5", "test-emt", ["cu"], 3, temperatures=[300.0], md_fraction=0.0,
                         progress=False)
        ds = open_dataset(tmp_path / "d.h5")
        assert len(ds) == 3 and ds.metadata["teacher_name"] == "test-emt"
        with pytest.raises(ValueError, match="registered twice"):
            register_teacher(TEACHERS["test-emt"])
    finally:
        TEACHERS.pop("test-emt")
