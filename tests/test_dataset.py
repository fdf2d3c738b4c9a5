"""The HDF5 dataset: round trip, ragged frames, fingerprint, crash safety, bad files (no teacher)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from mlffd.cli import main
from mlffd.data import DatasetWriter, open_dataset, summarize_dataset
from mlffd.errors import MLFFDError


def _labelled(n_rep=1, seed=0, vacancy=False):
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((n_rep, 1, 1))
    if vacancy:
        del a[0]
    a.rattle(0.05, seed=seed)
    a.calc = EMT()
    a.get_potential_energy()
    a.get_forces()
    a.get_stress()
    return a


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_round_trip_ragged(tmp_path):
    path = tmp_path / "d.h5"
    frames = [_labelled(1, 0), _labelled(2, 1), _labelled(1, 2, vacancy=True)]
    with DatasetWriter(path, "emt", "ase-emt") as w:
        for i, a in enumerate(frames):
            vel = np.full((len(a), 3), 0.01 * i) if i == 1 else None
            w.append(a, sampler="rattle" if i != 1 else "md", temperature=300.0 + i, seed=10 + i,
                     key=f"cu/x/{i}", velocities=vel)
        assert w.keys() == {"cu/x/0", "cu/x/1", "cu/x/2"}
        with pytest.raises(MLFFDError, match="already"):
            w.append(frames[0], sampler="rattle", temperature=1, seed=1, key="cu/x/0")
    # a non-periodic frame without stress
    mol = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.4]])
    with DatasetWriter(path, "emt", "ase-emt") as w:
        w.append(mol, sampler="import", temperature=0, seed=0, key="mol", energy=1.5,
                 forces=np.zeros((2, 3)))
    ds = open_dataset(path)
    assert len(ds) == 4
    meta = ds.metadata
    assert meta["teacher_name"] == "emt" and meta["teacher_version"] == "ase-emt"
    assert meta["schema_version"] == 1
    assert ds.elements == ["Cu"]
    for i, a in enumerate(frames):
        fr = ds.frame(i)
        assert fr["key"] == f"cu/x/{i}"
        np.testing.assert_array_equal(fr["positions"], a.positions)
        np.testing.assert_array_equal(fr["numbers"], a.numbers)
        np.testing.assert_array_equal(fr["cell"], a.cell[:])
        assert fr["energy"] == a.get_potential_energy()
        np.testing.assert_array_equal(fr["forces"], a.get_forces())
        np.testing.assert_array_equal(fr["stress"], a.get_stress())
        assert fr["temperature"] == 300.0 + i and fr["seed"] == 10 + i
        assert fr["positions"].dtype == np.float64 and fr["pbc"].dtype == bool
    assert ds.frame(1)["velocities"] is not None and ds.frame(0)["velocities"] is None
    assert ds.frame(3)["stress"] is None and ds.frame(3)["energy"] == 1.5
    at = ds.to_atoms(1)
    assert at.get_potential_energy() == frames[1].get_potential_energy()
    np.testing.assert_array_equal(at.get_forces(), frames[1].get_forces())
    assert len(ds.frames()) == 4
    # fingerprint: stable on reopen, changes with content
    fp = ds.fingerprint
    assert open_dataset(path).fingerprint == fp
    with DatasetWriter(path, "emt", "ase-emt") as w:
        w.append(_labelled(1, 5), sampler="rattle", temperature=1, seed=1, key="more")
    assert open_dataset(path).fingerprint != fp
    s = summarize_dataset(path)
    assert s["frames"] == 5 and s["elements"] == ["Cu"] and s["teacher"] == "emt"
    assert s["atoms_per_frame"]["min"] == 2 and s["atoms_per_frame"]["max"] == 8
    assert s["stress_present"] == 4


def test_elements_sorted_by_atomic_number(tmp_path):
    path = tmp_path / "d.h5"
    a = Atoms("OSiH", positions=[[0, 0, 0], [1.6, 0, 0], [-1, 0, 0]])
    with DatasetWriter(path, "t", "v") as w:
        w.append(a, sampler="x", temperature=0, seed=0, key="k", energy=0.0, forces=np.zeros((3, 3)))
    assert open_dataset(path).elements == ["H", "O", "Si"]


def test_teacher_mismatch_refused(tmp_path):
    path = tmp_path / "d.h5"
    with DatasetWriter(path, "chgnet", "v1") as w:
        w.append(_labelled(), sampler="rattle", temperature=1, seed=1, key="a")
    before = _sha(path)
    with pytest.raises(MLFFDError, match="chgnet"):
        DatasetWriter(path, "sevennet-0", "v1").open()
    with pytest.raises(MLFFDError, match="version"):
        DatasetWriter(path, "chgnet", "v2").open()
    assert _sha(path) == before


def test_bad_files(tmp_path):
    with pytest.raises(MLFFDError, match="not found"):
        open_dataset(tmp_path / "missing.h5")
    txt = tmp_path / "x.h5"
    txt.write_text("hello\n")
    with pytest.raises(MLFFDError, match="not an HDF5"):
        open_dataset(txt)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    before = _sha(other)
    with pytest.raises(MLFFDError, match="not an mlffd dataset"):
        open_dataset(other)
    with pytest.raises(MLFFDError, match="not an mlffd dataset"):
        DatasetWriter(other, "t", "v").open()
    assert _sha(other) == before
    newer = tmp_path / "newer.h5"
    with DatasetWriter(newer, "t", "v"):
        pass
    with h5py.File(newer, "a", libver="latest", locking=False) as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(MLFFDError, match="schema version 99"):
        open_dataset(newer)
    with pytest.raises(MLFFDError, match="does not exist"):
        DatasetWriter(tmp_path / "nodir" / "d.h5", "t", "v").open()


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from mlffd.data import DatasetWriter
    path, start = sys.argv[1], int(sys.argv[2])
    with DatasetWriter(path, "emt", "v") as w:
        i = start
        while True:
            a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1 + i % 2, 1, 1))
            a.rattle(0.05, seed=i)
            a.calc = EMT()
            a.get_forces(); a.get_stress()
            w.append(a, sampler="rattle", temperature=300.0, seed=i, key=f"k{i:06d}",
                     velocities=np.full((len(a), 3), float(i)))
            i += 1
    """
)


def _check_consistent(path):
    ds = open_dataset(path)
    for i in range(len(ds)):
        fr = ds.frame(i)
        assert fr["key"] == f"k{i:06d}"
        assert len(fr["numbers"]) == 4 * (1 + i % 2)
        np.testing.assert_array_equal(fr["velocities"], float(i))
        a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1 + i % 2, 1, 1))
        a.rattle(0.05, seed=i)
        np.testing.assert_array_equal(fr["positions"], a.positions)
    return len(ds)


def test_kill9_never_corrupts(tmp_path):
    """kill -9 a writer at random moments: committed frames stay complete, writing resumes."""
    path = tmp_path / "crash.h5"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    rng = np.random.default_rng(0)
    n = 0
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(path), str(n)])
        deadline = time.time() + 60
        while time.time() < deadline:  # wait for this round to commit something
            time.sleep(0.2)
            if path.exists():
                try:
                    if len(open_dataset(path)) > n + 2:
                        break
                except MLFFDError:
                    pass
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        m = _check_consistent(path)
        assert m > n, f"round {round_}: nothing committed"
        n = m
    # a resuming writer (rebuilds the file) keeps every committed frame and appends after them
    with DatasetWriter(path, "emt", "v") as w:
        assert len(w) == n
        a = _labelled()
        w.append(a, sampler="rattle", temperature=1, seed=1, key="last")
    ds = open_dataset(path)
    assert len(ds) == n + 1 and ds.frame(n)["key"] == "last"


def test_extxyz_export_import(tmp_path, capsys):
    path = tmp_path / "d.h5"
    with DatasetWriter(path, "emt", "ase-emt") as w:
        for i in range(3):
            w.append(_labelled(1 + i % 2, i), sampler="rattle", temperature=300, seed=i, key=f"k{i}")
    xyz = tmp_path / "d.extxyz"
    assert main(["data", "export", str(path), str(xyz)]) == 0
    back = tmp_path / "back.h5"
    assert main(["data", "import", str(xyz), str(back)]) == 0
    a, b = open_dataset(path), open_dataset(back)
    assert len(b) == 3 and b.metadata["teacher_name"] == "emt"
    assert b.keys() == a.keys()
    for i in range(3):
        fa, fb = a.frame(i), b.frame(i)
        np.testing.assert_allclose(fb["positions"], fa["positions"], atol=1e-8)
        np.testing.assert_allclose(fb["forces"], fa["forces"], atol=1e-8)
        np.testing.assert_allclose(fb["stress"], fa["stress"], atol=1e-10)
        assert fb["energy"] == pytest.approx(fa["energy"], abs=1e-8)
    # importing again adds nothing (same keys)
    assert main(["data", "import", str(xyz), str(back)]) == 0
    assert len(open_dataset(back)) == 3
    capsys.readouterr()
    assert main(["data", "export", str(tmp_path / "nope.h5"), str(xyz)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0]
