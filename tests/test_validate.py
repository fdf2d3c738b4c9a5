"""`mlffd validate`: metrics, MD checks, report files and input errors (random demo models only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distiller.errors import MLFFDError

REQUIRED = [
    ("forces", "mae"), ("forces", "rmse"), ("forces", "r2"), ("forces", "rel_mae"),
    ("energy", "mae_per_atom"), ("stress", "mae"), ("nve", "drift_ev_per_atom_per_ps"),
    ("rdf", "max_abs_diff"), ("md", "stable"),
]


def _write_dataset(path, calc, teacher_name, symbol="Si", n_frames=3, stress=True):
    from ase.build import bulk

    from distiller.data.dataset import DatasetWriter

    with DatasetWriter(path, teacher_name, "test labeller") as w:
        for k in range(n_frames):
            if symbol == "Si":
                atoms = bulk("Si", "diamond", a=5.431, cubic=True)
            else:
                atoms = bulk(symbol, "fcc", a=3.615, cubic=True)
            atoms.rattle(0.05, seed=k)
            atoms.calc = calc
            atoms.get_forces()
            if stress:
                atoms.get_stress()
            w.append(atoms, sampler="rattle", temperature=300.0, seed=k, key=f"{symbol}/{k}")
    return path


@pytest.fixture(scope="module")
def si_setup(tmp_path_factory):
    """A demo Si model and a dataset labelled by that same model (so it is its own teacher)."""
    from distiller.calculator import MLFFDCalculator
    from export.testing import make_demo_model

    d = tmp_path_factory.mktemp("validate")
    model = make_demo_model(d / "si.pt")
    other = make_demo_model(d / "si_other.pt", seed=1)
    data = _write_dataset(d / "si.h5", MLFFDCalculator(str(model)), f"mlffd:{model}")
    return {"dir": d, "model": model, "other": other, "data": data}


@pytest.fixture(scope="module")
def self_report(si_setup, tmp_path_factory):
    from distiller.validate import validate

    out = tmp_path_factory.mktemp("report_self")
    m = si_setup["model"]
    report = validate(m, f"mlffd:{m}", si_setup["data"], out, md_steps=20, teacher_md_steps=20, nve_steps=20,
                      verbose=False)
    return report, out


def test_self_validation_is_exact(self_report):
    report, out = self_report
    on_disk = json.loads((out / "report.json").read_text())
    for section, key in REQUIRED:
        assert key in on_disk[section], (section, key)
    assert on_disk["forces"]["mae"] == 0.0
    assert on_disk["forces"]["rmse"] == 0.0
    assert on_disk["forces"]["r2"] == 1.0
    assert on_disk["forces"]["rel_mae"] == 0.0
    assert on_disk["energy"]["mae_per_atom"] == 0.0
    assert on_disk["stress"]["mae"] == 0.0 and on_disk["stress"]["n_frames"] == 3
    assert on_disk["forces"]["per_element"]["Si"]["n_atoms"] == 24
    # same model, thermostat, seed and timestep: identical trajectories, identical RDFs
    assert on_disk["rdf"]["max_abs_diff"] == 0.0
    assert on_disk["rdf"]["frames_student"] > 0 and on_disk["rdf"]["frames_teacher"] > 0
    assert on_disk["md"]["stable"] is True
    assert np.isfinite(on_disk["nve"]["drift_ev_per_atom_per_ps"])
    assert abs(on_disk["nve"]["drift_ev_per_atom_per_ps"]) < 1e-3
    assert on_disk["nve"]["steps"] == 19
    for key in ("forces.mae", "energy.mae_per_atom", "stress.mae", "nve.drift_ev_per_atom_per_ps", "rdf.max_abs_diff"):
        assert key in on_disk["units"]
    assert on_disk == report


def test_report_files(self_report):
    _, out = self_report
    for name in ("report.md", "parity.png", "energy_vs_time.png", "rdf.png", "md_student.extxyz"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    text = (out / "report.md").read_text()
    assert "force MAE" in text and "NVE drift" in text and "eV/atom/ps" in text


def test_other_model_has_errors(si_setup, tmp_path):
    from distiller.validate import validate

    report = validate(si_setup["other"], f"mlffd:{si_setup['model']}", si_setup["data"], tmp_path, md_steps=0,
                      verbose=False)
    assert report["forces"]["mae"] > 0
    assert report["forces"]["r2"] < 1.0
    assert report["forces"]["rel_mae"] > 0
    assert report["energy"]["mae_per_atom"] > 0
    assert report["stress"]["mae"] > 0
    assert report["md"]["stable"] is None  # MD skipped
    assert report["nve"]["drift_ev_per_atom_per_ps"] is None
    assert (tmp_path / "parity.png").is_file()


def test_instability_is_reported(si_setup, tmp_path):
    from distiller.validate import validate

    m = si_setup["model"]
    # a floor above the Si-Si bond (2.35 A): the very first check must fail
    report = validate(m, f"mlffd:{m}", si_setup["data"], tmp_path, md_steps=10, teacher_md_steps=0,
                      min_distance=2.5, verbose=False)
    assert report["md"]["stable"] is False
    assert "A)" in report["md"]["reasons"][0] and "student" in report["md"]["reasons"][0]
    assert report["nve"]["drift_ev_per_atom_per_ps"] is None
    assert report["rdf"]["max_abs_diff"] is None


def test_cli_validate(si_setup, tmp_path, capsys):
    from distiller.cli import main

    m = si_setup["model"]
    rc = main(["validate", str(m), "--teacher", f"mlffd:{m}", "--data", str(si_setup["data"]),
               "--report", str(tmp_path / "r"), "--md-steps", "6", "--teacher-md-steps", "6", "--seed", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "R^2 1.00000" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["md"]["seed"] == 3 and report["md"]["student_nvt_steps"] == 6


@pytest.mark.parametrize("case", ["missing_model", "missing_data", "unknown_teacher", "elements", "not_a_model"])
def test_bad_inputs(si_setup, tmp_path, capsys, case):
    from ase.calculators.emt import EMT

    from distiller.cli import main

    m, data = str(si_setup["model"]), str(si_setup["data"])
    teacher = f"mlffd:{m}"
    if case == "missing_model":
        m, expect = str(tmp_path / "nope.pt"), "does not exist"
    elif case == "missing_data":
        data, expect = str(tmp_path / "nope.h5"), "dataset not found"
    elif case == "unknown_teacher":
        teacher, expect = "no-such-teacher", "unknown teacher"
    elif case == "elements":
        data = str(_write_dataset(tmp_path / "cu.h5", EMT(), "ase:emt", symbol="Cu", n_frames=1))
        expect = "element(s) Cu"
    else:
        m = str(tmp_path / "fake.pt")
        (tmp_path / "fake.pt").write_text("not a model")
        expect = "not an mlffd model"
    rc = main(["validate", m, "--teacher", teacher, "--data", data, "--report", str(tmp_path / "r"), "--md-steps", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert expect in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "report.json").exists()


def test_negative_steps_refused(si_setup, tmp_path):
    from distiller.validate import validate

    with pytest.raises(MLFFDError, match="md-steps"):
        validate(si_setup["model"], "ase:emt", si_setup["data"], tmp_path, md_steps=-1, verbose=False)


def test_rdf_and_drift_helpers():
    from ase.build import bulk

    from distiller.validate.md import RDF, MDResult, default_min_distance, nve_drift

    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)
    rdf = RDF(r_max=4.0, bin_width=0.05)
    rdf.add(atoms)
    g = rdf.g()
    first = rdf.r[np.argmax(g > 0)]
    assert abs(first - 3.615 / np.sqrt(2)) < 0.05  # nearest neighbour shell
    # 12 neighbours in the first shell: integral of rho g 4 pi r^2 dr over it
    rho = len(atoms) / atoms.get_volume()
    shell = (rdf.r > 2.4) & (rdf.r < 2.7)
    n1 = np.sum(rho * g[shell] * 4 / 3 * np.pi * (rdf.edges[1:][shell] ** 3 - rdf.edges[:-1][shell] ** 3))
    assert abs(n1 - 12) < 1e-9

    res = MDResult(label="x")
    for k in range(11):
        res.time_fs.append(k * 100.0)  # 0 .. 1 ps
        res.epot.append(-10.0 + 0.2 * k * 0.1 * 4)  # 4 atoms, slope 0.2 eV/atom/ps
        res.ekin.append(0.0)
        res.phase.append("nve")
    d = nve_drift(res, 4)
    assert abs(d["drift_ev_per_atom_per_ps"] - 0.2) < 1e-12
    assert abs(d["duration_ps"] - 1.0) < 1e-12
    assert default_min_distance(["Si"]) == pytest.approx(1.0, abs=0.01)


@pytest.mark.slow
def test_validate_with_sevennet(tmp_path):
    """The real teacher (SevenNet-0, ~0.1 s per 8-atom call): a random student is far from it."""
    from distiller.teachers.registry import load_teacher
    from distiller.validate import validate
    from export.testing import make_demo_model

    teacher = load_teacher("sevennet-0")
    data = _write_dataset(tmp_path / "si.h5", teacher, teacher.teacher_name, n_frames=2)
    model = make_demo_model(tmp_path / "si.pt", cutoff=5.0)
    report = validate(model, "sevennet-0", data, tmp_path / "r", md_steps=10, teacher_md_steps=10, verbose=False)
    assert report["forces"]["r2"] < 0.9
    assert report["teacher"]["name"] == "sevennet-0"
    assert report["rdf"]["frames_teacher"] > 0
