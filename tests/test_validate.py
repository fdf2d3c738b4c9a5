"""`mlffd validate` on frozen models: the CLI, held-out frame errors, the teacher cache across runs
and after kill -9, input errors (a student trained on EMT Cu, and random demo models)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mlffd.errors import MLFFDError


def _write_dataset(path, calc, teacher_name, symbol="Si", n_frames=3):
    from ase.build import bulk

    from mlffd.data.writer import DatasetWriter

    with DatasetWriter(path, teacher_name, "test labeller") as w:
        for k in range(n_frames):
            atoms = bulk("Si", "diamond", a=5.431, cubic=True) if symbol == "Si" else bulk(symbol, "fcc", a=3.615,
                                                                                          cubic=True)
            atoms.rattle(0.05, seed=k)
            atoms.calc = calc
            atoms.get_forces()
            atoms.get_stress()
            w.append(atoms, sampler="rattle", temperature=300.0, seed=k, key=f"{symbol}/{k}")
    return path


@pytest.fixture(scope="module")
def si_setup(tmp_path_factory):
    """A random Si model: enough for inputs that are refused before any work."""
    from mlffd.export.testing import make_demo_model

    d = tmp_path_factory.mktemp("validate")
    return {"dir": d, "model": make_demo_model(d / "si.pt")}


def _validate_cli(args, capsys):
    from mlffd.cli import main

    rc = main(["validate", *map(str, args)])
    return rc, capsys.readouterr()


@pytest.fixture(scope="module")
def cu_data(emt_cu_student, tmp_path_factory):
    """Held-out Cu frames labelled by the EMT-trained student itself."""
    from mlffd.calculator import MLFFDCalculator

    path = tmp_path_factory.mktemp("cu_data") / "cu.h5"
    return _write_dataset(path, MLFFDCalculator(str(emt_cu_student)), f"mlffd:{emt_cu_student}", symbol="Cu")


def test_cli_self_validation_is_exact_and_cached(emt_cu_student, cu_data, tmp_path, capsys):
    m, cache = emt_cu_student, tmp_path / "cache.h5"
    args = [m, "--teacher", f"mlffd:{m}", "--properties", "eos,elastic", "--data", cu_data, "--reference-cache", cache]
    rc, out = _validate_cli(args + ["--report", tmp_path / "r1"], capsys)  # --system: cu, from the elements
    assert rc == 0, out.err
    assert "| a0 | A |" in out.out and "| C44 | GPa |" in out.out and "teacher calls:" in out.out
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert report["system"]["name"] == "cu"
    eos = report["properties"]["eos"]
    assert eos["teacher"]["a0_A"] == eos["student"]["a0_A"] and eos["teacher"]["B_GPa"] == eos["student"]["B_GPa"]
    assert all(r["deviation"] == 0.0 for r in report["table"] if r["deviation"] is not None)
    frames = report["frames"]
    assert frames["forces"]["mae"] < 1e-12 and frames["stress"]["mae"] < 1e-12
    assert report["teacher_calls"]["calls"] > 20 and (tmp_path / "r1" / "parity.png").is_file()

    rc, out = _validate_cli(args + ["--report", tmp_path / "r2"], capsys)
    assert rc == 0, out.err
    again = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert again["teacher_calls"]["calls"] == 0
    _assert_same_table(again["table"], report["table"])


def test_student_against_its_teacher(emt_cu_student, tmp_path):
    """The EMT-trained student against EMT: close, not equal."""
    from ase.calculators.emt import EMT

    from mlffd.validate import validate

    data = _write_dataset(tmp_path / "emt.h5", EMT(), "emt", symbol="Cu")
    report = validate(emt_cu_student, "emt", tmp_path / "r", system="cu", properties=["eos", "elastic"],
                      data=data, reference_cache=tmp_path / "c.h5", verbose=False)
    assert 0 < report["frames"]["forces"]["mae"] < 0.5
    rows = {r["property"]: r for r in report["table"]}
    assert 0 < abs(rows["a0"]["deviation"]) < 3.0  # %
    assert rows["B (EOS)"]["deviation"] != 0.0


def _cache_frames(path) -> int:
    from mlffd.data.dataset import open_dataset

    try:
        return len(open_dataset(path))
    except MLFFDError:
        return 0


def test_killed_validation_resumes_without_repeating_teacher_calls(emt_cu_student, tmp_path):
    m = emt_cu_student
    command = [sys.executable, "-m", "mlffd.cli", "validate", str(m), "--teacher", f"mlffd:{m}", "--system", "cu",
               "--properties", "eos,md", "--temperatures", "600", "--equilibration-steps", "30", "--md-steps", "120",
               "--nve-ps", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    uninterrupted = subprocess.run(command + ["--report", str(tmp_path / "full"), "--reference-cache",
                                              str(tmp_path / "full.h5")], env=env, capture_output=True, text=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    total = _cache_frames(tmp_path / "full.h5")
    assert total > 150

    cache = tmp_path / "killed.h5"
    proc = subprocess.Popen(command + ["--report", str(tmp_path / "killed"), "--reference-cache", str(cache)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _cache_frames(cache) < 60 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _cache_frames(cache)
    assert 60 <= done < total, "the run must be killed half-way for this test to mean anything"

    resumed = subprocess.run(command + ["--report", str(tmp_path / "killed"), "--reference-cache", str(cache),
                                        "--json"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["teacher_calls"]["calls"] == total - done  # only what the killed run had not asked
    assert _cache_frames(cache) == total  # and nothing twice
    full = json.loads((tmp_path / "full" / "report.json").read_text())
    _assert_same_table(report["table"], full["table"])


def _assert_same_table(a: list, b: list) -> None:
    """Equal rows; numbers equal to rounding (the student side is recomputed each time, and the
    thermal-state rows subtract two energies of the order of the crystal's)."""
    assert [r["property"] for r in a] == [r["property"] for r in b]
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], float) and isinstance(y[key], float):
                assert x[key] == pytest.approx(y[key], rel=1e-9, abs=1e-9), (x["property"], key)
            else:
                assert x[key] == y[key], (x["property"], key)


# case -> (flags after the model and teacher, what the one-line error says); "{tmp}" is the test's folder
BAD_FLAGS = {
    "unknown_property": (["--properties", "eos,bandgap"], "unknown property bandgap"),
    "foreign_system": (["--system", "cu"], "element(s) Cu that the model does not know"),
    "supercell_suffix": (["--system", "si:2x2x2"], "takes a unit cell"),
    "missing_data": (["--data", "{tmp}/nope.h5"], "dataset not found"),
    "bad_surface": (["--surface", "1x1"], "--surface takes three digits"),
    "bad_budget": (["--budget", "0"], "--budget must be > 0"),
    "bad_temperature": (["--temperatures", "300,hot"], "--temperatures must be comma-separated numbers in K"),
}


@pytest.mark.parametrize("case", ["missing_model", "not_a_model", "unknown_teacher", "foreign_cache", *BAD_FLAGS])
def test_bad_inputs(si_setup, tmp_path, capsys, case):
    m, teacher = str(si_setup["model"]), f"mlffd:{si_setup['model']}"
    extra = []
    if case in BAD_FLAGS:
        flags, expect = BAD_FLAGS[case]
        extra = [flag.format(tmp=tmp_path) for flag in flags]
    elif case == "missing_model":
        m, expect = str(tmp_path / "nope.pt"), "does not exist"
    elif case == "not_a_model":
        (tmp_path / "fake.pt").write_text("not a model")
        m, expect = str(tmp_path / "fake.pt"), "not an mlffd model"
    elif case == "unknown_teacher":
        teacher, expect = "no-such-teacher", "unknown teacher"
    else:
        from ase.calculators.emt import EMT

        cache = _write_dataset(tmp_path / "emt.h5", EMT(), "emt", symbol="Cu", n_frames=1)
        extra, expect = ["--properties", "eos", "--reference-cache", str(cache)], "pass another --reference-cache"
    rc, out = _validate_cli([m, "--teacher", teacher, "--report", tmp_path / "r", *extra], capsys)
    assert rc == 2
    assert expect in out.err
    assert len(out.err.strip().splitlines()) == 1, out.err
    assert not (tmp_path / "r" / "report.json").exists()


def test_no_builtin_for_the_elements(tmp_path):
    from mlffd.validate import validate
    from mlffd.export.testing import make_demo_model

    model = make_demo_model(tmp_path / "sic.pt", elements=("Si", "C"))
    with pytest.raises(MLFFDError, match="no built-in system for the model's elements"):
        validate(model, "emt", tmp_path / "r", verbose=False)


def test_rdf_and_msd_helpers():
    from ase.build import bulk

    from mlffd.validate.properties.crystal import default_min_distance
    from mlffd.validate.properties.dynamics import RDF, mean_squared_displacement

    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)
    rdf = RDF(r_max=4.0, bin_width=0.05)
    rdf.add(atoms)
    g = rdf.g()
    assert abs(rdf.r[np.argmax(g > 0)] - 3.615 / np.sqrt(2)) < 0.05  # nearest-neighbour shell
    rho = len(atoms) / atoms.get_volume()
    shell = (rdf.r > 2.4) & (rdf.r < 2.7)
    n1 = np.sum(rho * g[shell] * 4 / 3 * np.pi * (rdf.edges[1:][shell] ** 3 - rdf.edges[:-1][shell] ** 3))
    assert abs(n1 - 12) < 1e-9  # 12 neighbours in the first shell
    assert default_min_distance(["Si"]) == pytest.approx(1.0, abs=0.01)

    # one atom of two walks at constant velocity 0.1 A/fs along x, the other sits still
    steps = np.arange(40)
    positions = [np.array([[0.1 * 10.0 * k, 0, 0], [5.0, 0, 0]]) for k in steps]
    msd = mean_squared_displacement(positions, np.array([29, 14]), sample_fs=10.0)
    cu = msd["per_element"]["Cu"]["msd_A2"]
    # the centre of mass is removed: each atom moves half the relative displacement
    assert cu[5] == pytest.approx((0.5 * 5.0) ** 2)
    assert msd["per_element"]["Cu"]["diffusive"] and len(msd["lag_ps"]) == 21


@pytest.mark.slow
def test_validate_with_sevennet(tmp_path):
    """The real teacher (SevenNet-0): a random student is far from it."""
    from mlffd.validate import validate
    from mlffd.export.testing import make_demo_model

    model = make_demo_model(tmp_path / "si.pt", cutoff=5.0)
    report = validate(model, "sevennet-0", tmp_path / "r", system="si", properties=["eos"],
                      reference_cache=tmp_path / "c.h5", verbose=False)
    assert report["teacher"]["name"] == "sevennet-0"
    t = report["properties"]["eos"]["teacher"]
    assert t["a0_A"] == pytest.approx(5.45, abs=0.05) and t["B_GPa"] == pytest.approx(90, abs=15)
