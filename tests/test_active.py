"""Active learning with EMT as the teacher: it asks where the data is missing, resumes after kill -9
without labelling a frame twice, and its selection is seeded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlffd.active import ActiveSettings, active_learning
from mlffd.data.dataset import open_dataset
from mlffd.data.writer import DatasetWriter
from mlffd.training.config import TrainConfig

TRAIN = {"preset": "tiny", "cutoff": 4.0, "epochs": 12, "batch_size": 4, "lr": 0.01, "ema_decay": 0.8,
         "dtype": "float64"}
SETTINGS = dict(rounds=2, committee=3, temperatures=[500.0], md_steps=60, sample_every=10, frames_per_round=4,
                min_separation=1, stop_std=0.0)


def _seed_data(path, n=16):
    """Perfect-crystal Cu, gently rattled: the data has never seen a vacancy."""
    rng = np.random.default_rng(0)
    with DatasetWriter(path, "emt", "ase EMT") as w:
        for i in range(n):
            atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(2)
            atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
            atoms.calc = EMT()
            atoms.get_stress()
            w.append(atoms, sampler="rattle", temperature=300.0, seed=i, key=f"cu/rattle/{i}")
    return path


def _run(tmp_path, name, **overrides):
    data = _seed_data(tmp_path / f"{name}.h5")
    state = active_learning(data, "emt", ["cu"], tmp_path / name, ActiveSettings(**{**SETTINGS, **overrides}),
                            TrainConfig.from_dict(TRAIN), calculator=EMT(), log=lambda _m: None)
    return data, state


def test_the_committee_asks_for_the_vacancy(tmp_path):
    data, state = _run(tmp_path, "a")
    first = state["rounds"][0]
    assert first["candidates"] == 12 and first["selected"] == 4  # 2 starts x 6 samples
    # the data set holds only perfect crystals: the committee disagrees most next to the vacancy
    assert sum("cu-vac/" in k for k in first["keys"]) >= 3
    ds = open_dataset(data)
    assert len(ds) == 16 + sum(r["selected"] for r in state["rounds"])
    assert sum(s == "active" for s in (ds.frame(i)["sampler"] for i in range(len(ds)))) == len(ds) - 16
    provenance = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert set(provenance) == {k for r in state["rounds"] for k in r["keys"]}
    assert all(p["committee_force_std"] > 0 and p["round"] in (0, 1) for p in provenance.values())
    # labels are the teacher's own numbers
    k = ds.keys().index(first["keys"][0])
    atoms = ds.to_atoms(k)
    expected = atoms.copy()
    expected.calc = EMT()
    assert np.allclose(atoms.get_forces(), expected.get_forces(), atol=1e-12)

    again_data, again = _run(tmp_path, "b")
    assert [r["keys"] for r in again["rounds"]] == [r["keys"] for r in state["rounds"]]  # seeded
    _, other = _run(tmp_path, "c", seed=1)
    assert other["rounds"][0]["keys"] != first["keys"]


def _keys(path):
    try:
        return open_dataset(path).keys()
    except Exception:
        return []


def test_resumes_after_kill_without_duplicates(tmp_path):
    command = [sys.executable, "-m", "mlffd.cli", "active", "--system", "cu", "--temperatures", "500",
               "--rounds", "2", "--committee", "2", "--md-steps", "60", "--sample-every", "10",
               "--frames-per-round", "4", "--stop-std", "0", "--epochs", "12", "--config", str(tmp_path / "t.json")]
    (tmp_path / "t.json").write_text(json.dumps({k: v for k, v in TRAIN.items() if k != "epochs"}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = _seed_data(tmp_path / "straight.h5")
    done = subprocess.run(command + [str(straight), "--out", str(tmp_path / "straight")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = _keys(straight)
    assert len(expected) == 16 + 8

    killed = _seed_data(tmp_path / "killed.h5")
    proc = subprocess.Popen(command + [str(killed), "--out", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while len(_keys(killed)) < 18 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # killed after its first labels (round 0) and before the end
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 18 <= len(_keys(killed)) < len(expected), "the run must be killed half-way"
    resumed = subprocess.run(command + [str(killed), "--out", str(tmp_path / "killed")], env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    keys = _keys(killed)
    assert len(keys) == len(set(keys)) and sorted(keys) == sorted(expected)


def test_bad_settings(tmp_path):
    from mlffd.errors import MLFFDError

    data = _seed_data(tmp_path / "d.h5", n=4)
    with pytest.raises(MLFFDError, match="committee must be at least 2"):
        active_learning(data, "emt", ["cu"], tmp_path / "x", ActiveSettings(committee=1), TrainConfig.from_dict(TRAIN))
    with pytest.raises(MLFFDError, match="labelled by 'emt', not 'sevennet-0'"):
        active_learning(data, "sevennet-0", ["cu"], tmp_path / "x", ActiveSettings(), TrainConfig.from_dict(TRAIN))


def _lammps_dump(path, frames, element_column=True):
    """A LAMMPS text dump (orthogonal box) of the frames, as `dump ... custom ... id element x y z` writes it."""
    lines = []
    for step, atoms in enumerate(frames):
        lines += ["ITEM: TIMESTEP", str(step * 20), "ITEM: NUMBER OF ATOMS", str(len(atoms)), "ITEM: BOX BOUNDS pp pp pp"]
        lines += [f"0.0 {atoms.cell[k, k]:.10f}" for k in range(3)]
        lines.append("ITEM: ATOMS id element x y z" if element_column else "ITEM: ATOMS id type x y z")
        for i, (symbol, (x, y, z)) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions)):
            lines.append(f"{i + 1} {symbol if element_column else 1} {x:.10f} {y:.10f} {z:.10f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_students_own_uncertainty_picks_the_unfamiliar_frames_of_a_production_trajectory(tmp_path):
    """--score uncertainty --trajectory: one student, candidates read from a file, the frames far from
    the data (a compressed cell) labelled first; a given student (--model) and a LAMMPS dump of the
    same frames make the same picks."""
    from ase.io import write

    from mlffd.errors import MLFFDError

    rng = np.random.default_rng(1)
    frames = []
    for i in range(8):
        squeeze = 0.93 if i in (2, 5) else 1.0  # two frames 7 % compressed: never in the data
        atoms = bulk("Cu", "fcc", a=3.59 * squeeze, cubic=True).repeat(2)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    write(tmp_path / "prod.extxyz", frames)
    settings = dict(rounds=1, score="uncertainty", sample_every=1, frames_per_round=2, min_separation=1)
    data = _seed_data(tmp_path / "u.h5")
    state = active_learning(data, "emt", [], tmp_path / "u", ActiveSettings(
        **settings, trajectories=[str(tmp_path / "prod.extxyz")]), TrainConfig.from_dict(TRAIN),
        calculator=EMT(), log=lambda _m: None)
    first = state["rounds"][0]
    assert first["candidates"] == 8 and first["selected"] == 2
    assert sorted(int(k[-5:]) for k in first["keys"]) == [2, 5]
    assert first["stop"] < first["max_score"]
    ds = open_dataset(data)
    assert len(ds) == 18 and ds.frame(17)["sampler"] == "active"
    provenance = json.loads((tmp_path / "u" / "provenance.json").read_text())
    assert all(p["uncertainty"] > first["stop"] for p in provenance.values())

    model = tmp_path / "u" / "round00" / "member0.pt"
    dump = _lammps_dump(tmp_path / "prod.lammpstrj", frames)
    again = active_learning(_seed_data(tmp_path / "v.h5"), "emt", [], tmp_path / "v", ActiveSettings(
        **settings, trajectories=[str(dump)], model=str(model)), TrainConfig.from_dict(TRAIN),
        calculator=EMT(), log=lambda _m: None)
    assert [k[-5:] for k in again["rounds"][0]["keys"]] == [k[-5:] for k in first["keys"]]
    assert not (tmp_path / "v" / "round00").exists()  # the given student, none trained

    typed = _lammps_dump(tmp_path / "typed.lammpstrj", frames, element_column=False)
    with pytest.raises(MLFFDError, match="dump_modify ID element"):
        active_learning(_seed_data(tmp_path / "w.h5"), "emt", [], tmp_path / "w", ActiveSettings(
            **settings, trajectories=[str(typed)], model=str(model)), TrainConfig.from_dict(TRAIN))
    with pytest.raises(MLFFDError, match="add score='uncertainty'"):
        ActiveSettings(model=str(model)).check()
