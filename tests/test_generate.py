"""`mlffd generate`: labels equal the teacher's own calculator, resume after kill -9, bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from mlffd.cli import main
from mlffd.data import DatasetWriter, open_dataset, summarize_dataset
from mlffd.data.generate import generate_dataset
from mlffd.data.sampling import plan_recipes
from mlffd.data.systems import load_systems
from mlffd.errors import MLFFDError

MLFFD = [sys.executable, "-m", "mlffd.cli"]


@pytest.fixture(scope="module")
def sevennet():
    from mlffd.teachers import load_teacher

    return load_teacher("sevennet-0")


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_plan_is_deterministic_and_unique():
    systems = load_systems(["si:1x1x1", "cu:1x1x1"])
    p1 = plan_recipes(systems, 50, [300, 900], seed=3, md_fraction=0.3, vacancy_fraction=0.1)
    p2 = plan_recipes(systems, 50, [300, 900], seed=3, md_fraction=0.3, vacancy_fraction=0.1)
    assert p1 == p2 and len(p1) == 50 and len({r.key for r in p1}) == 50
    counts = {s: sum(r.sampler == s for r in p1) for s in ("md", "vacancy", "rattle", "strain")}
    assert counts == {"md": 15, "vacancy": 5, "rattle": 15, "strain": 15}
    pos = {r.key: i for i, r in enumerate(p1)}
    for r in p1:  # an MD frame always comes after the frame it continues
        if r.prev_key:
            assert pos[r.prev_key] < pos[r.key]
    assert plan_recipes(systems, 50, [300, 900], seed=4)[0].key != p1[0].key


def test_generate_small_matches_teacher(tmp_path, sevennet, capsys):
    out = tmp_path / "si.h5"
    rep = generate_dataset(out, "sevennet-0", ["si:1x1x1"], frames=6, temperatures=[600.0],
                           md_fraction=0.34, md_stride=2, calculator=sevennet, progress=False)
    assert rep["written"] == 6 and rep["frames_in_file"] == 6
    assert "frames/min" in capsys.readouterr().out
    s = summarize_dataset(out)
    assert s["frames"] == 6 and s["elements"] == ["Si"] and s["teacher"] == "sevennet-0"
    assert s["samplers"] == {"rattle": 2, "strain": 2, "md": 2} and s["stress_present"] == 6
    ds = open_dataset(out)
    assert ds.metadata["teacher_version"] == "sevenn 0.13.0 7net-0"
    # recompute two frames (one MD) with SevenNet's own calculator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sevenn.calculator import SevenNetCalculator

        own = SevenNetCalculator("7net-0", device="cpu")
    keys = ds.keys()
    for i in (0, next(i for i, k in enumerate(keys) if "/md/" in k)):
        fr = ds.frame(i)
        a = Atoms(numbers=fr["numbers"], positions=fr["positions"], cell=fr["cell"], pbc=fr["pbc"])
        a.calc = own
        assert a.get_potential_energy() == pytest.approx(fr["energy"], abs=1e-5)
        np.testing.assert_allclose(a.get_forces(), fr["forces"], atol=1e-5)
        np.testing.assert_allclose(a.get_stress(), fr["stress"], atol=1e-6)
    assert ds.frame(keys.index("si1x1x1/md/T600/s0/k00000"))["velocities"] is not None
    # the same command again does nothing and leaves the file as it was
    before = _sha(out)
    assert main(["generate", "--system", "si:1x1x1", "--frames", "6", "--temperatures", "600",
                 "--md-fraction", "0.34", "--md-stride", "2", "--out", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert _sha(out) == before


def _frames_by_key(path):
    ds = open_dataset(path)
    return {fr["key"]: fr for fr in ds.frames()}


def test_kill9_and_resume_equals_uninterrupted(tmp_path, sevennet):
    """kill -9 `mlffd generate` mid-run, rerun it: exactly N distinct frames, the old ones
    unchanged, and every frame (MD chains too) equal to an uninterrupted run's."""
    n = 8
    args = ["generate", "--system", "si:1x1x1", "--frames", str(n), "--temperatures", "600",
            "--md-fraction", "0.5", "--md-stride", "2", "--seed", "5", "--no-progress"]
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(MLFFD + args + ["--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    committed = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
            if out.exists():
                try:
                    committed = len(open_dataset(out))
                except MLFFDError:
                    continue
                if committed >= 3:  # past the first MD frame (plan: rattle, strain, md, ...)
                    break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 3 <= committed < n, f"could not stop the run mid-way (committed {committed})"
    before = _frames_by_key(out)
    assert 3 <= len(before) < n
    assert main(args + ["--out", str(out)]) == 0  # the same command again
    after = _frames_by_key(out)
    assert len(after) == n == len(open_dataset(out))
    for k, fr in before.items():  # nothing lost or changed
        np.testing.assert_array_equal(after[k]["positions"], fr["positions"])
        assert after[k]["energy"] == fr["energy"]
    ref = tmp_path / "ref.h5"
    generate_dataset(ref, "sevennet-0", ["si:1x1x1"], frames=n, temperatures=[600.0], seed=5,
                     md_fraction=0.5, md_stride=2, calculator=sevennet, progress=False, log=lambda *_: None)
    want = _frames_by_key(ref)
    assert set(want) == set(after)
    assert sum("/md/" in k for k in want) == 4
    # SevenNet runs in float32: the same positions may differ by an ulp between processes,
    # so compare to float32 precision (an MD restart from wrong state would differ by ~0.01 A)
    for k, fr in want.items():
        np.testing.assert_allclose(after[k]["positions"], fr["positions"], atol=1e-7, err_msg=k)
        np.testing.assert_allclose(after[k]["forces"], fr["forces"], atol=1e-4, err_msg=k)
        assert after[k]["energy"] == pytest.approx(fr["energy"], abs=1e-4)
        if fr["velocities"] is not None:
            np.testing.assert_allclose(after[k]["velocities"], fr["velocities"], atol=1e-8, err_msg=k)


# ------------------------------------------------------------------------------- bad inputs


def _gen(out, *extra, system="si:1x1x1", teacher="sevennet-0"):
    return main(["generate", "--teacher", teacher, "--system", system, "--frames", "2",
                 "--out", str(out), "--no-progress", *extra])


def test_bad_inputs(tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert _gen(out, teacher="nope") == 2
    assert "unknown teacher 'nope'" in _one_error_line(capsys)

    po = tmp_path / "po.xyz"
    Atoms("SiPo", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[8, 8, 8], pbc=True).write(po)
    assert _gen(out, system=str(po)) == 2
    msg = _one_error_line(capsys)
    assert "does not cover element(s) Po" in msg

    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    assert _gen(out, system=str(empty)) == 2
    assert "empty" in _one_error_line(capsys)

    junk = tmp_path / "junk.xyz"
    junk.write_text("this is not\na structure file\n")
    assert _gen(out, system=str(junk)) == 2
    assert "cannot read structure file" in _one_error_line(capsys)

    assert _gen(out, system=str(tmp_path / "missing.cif")) == 2
    assert "unknown system" in _one_error_line(capsys)

    nan = tmp_path / "nan.extxyz"
    a = bulk("Si", "diamond", a=5.43, cubic=True)
    a.positions[2, 1] = np.nan
    a.write(nan)
    assert _gen(out, system=str(nan)) == 2
    assert "non-finite" in _one_error_line(capsys)

    close = tmp_path / "close.extxyz"
    a = bulk("Si", "diamond", a=5.43, cubic=True)
    a.positions[1] = a.positions[0] + [0.3, 0, 0]
    a.write(close)
    assert _gen(out, system=str(close)) == 2
    assert "closer than 0.5 A" in _one_error_line(capsys)

    assert _gen(tmp_path / "no" / "such" / "dir.h5") == 2
    assert "does not exist" in _one_error_line(capsys)
    assert _gen(tmp_path) == 2
    assert "directory" in _one_error_line(capsys)

    assert _gen(out, "--frames", "0") == 2
    assert "at least 1" in _one_error_line(capsys)
    assert _gen(out, "--temperatures", "hot") == 2
    assert "--temperatures" in _one_error_line(capsys)
    assert not out.exists()  # nothing was created by any failed run


def test_existing_foreign_files_left_intact(tmp_path, capsys):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.arange(4))
    before = _sha(other)
    assert _gen(other) == 2
    assert "not an mlffd dataset" in _one_error_line(capsys)
    assert _sha(other) == before

    chg = tmp_path / "chg.h5"
    a = bulk("Si", "diamond", a=5.43, cubic=True)
    with DatasetWriter(chg, "chgnet", "chgnet 0.4.2") as w:
        w.append(a, sampler="rattle", temperature=1, seed=1, key="k", energy=-40.0,
                 forces=np.zeros((8, 3)))
    before = _sha(chg)
    assert _gen(chg) == 2
    assert "teacher 'chgnet', not 'sevennet-0'" in _one_error_line(capsys)
    assert _sha(chg) == before

    txt = tmp_path / "notes.h5"
    txt.write_text("notes")
    assert _gen(txt) == 2
    assert "not an HDF5 file" in _one_error_line(capsys)
    assert txt.read_text() == "notes"


def test_physics_samplers_cover_volume_strain_and_defects():
    """volume / elastic / interstitial recipes: the plan without them is unchanged; each frame is
    what its sampler promises."""
    from ase.geometry import get_distances

    from mlffd.data.sampling import sample_elastic, sample_interstitial, sample_volume

    systems = load_systems(["si:1x1x1"])
    base = plan_recipes(systems, 40, [300, 900], seed=1, md_fraction=0.2)
    assert plan_recipes(systems, 40, [300, 900], seed=1, md_fraction=0.2, fractions={}) == base
    plan = plan_recipes(systems, 40, [300, 900], seed=1, md_fraction=0.2,
                        fractions={"volume": 0.1, "elastic": 0.15, "interstitial": 0.05})
    counts = {s: sum(r.sampler == s for r in plan) for s in ("volume", "elastic", "interstitial", "md")}
    assert counts == {"volume": 4, "elastic": 6, "interstitial": 2, "md": 8} and len({r.key for r in plan}) == 40
    image = systems[0].images[0]
    for r in plan:
        if r.sampler == "volume":
            ratio = sample_volume(image, r).get_volume() / image.get_volume()
            assert 0.9 - 1e-9 <= ratio <= 1.1 + 1e-9 and ratio != 1.0
        elif r.sampler == "elastic":
            atoms = sample_elastic(image, r)
            strain = np.linalg.solve(image.cell[:], atoms.cell[:]) - np.eye(3)
            assert np.count_nonzero(np.abs(strain) > 1e-12) in (1, 2)  # one normal or one shear pair
            assert np.allclose(atoms.get_scaled_positions(), image.get_scaled_positions())  # no rattle
        elif r.sampler == "interstitial":
            atoms = sample_interstitial(image, r)
            assert len(atoms) == len(image) + 1
            _, d = get_distances(atoms.positions[-1:], image.positions, cell=image.cell, pbc=True)
            assert d.min() > 1.8  # the emptiest spot of diamond Si is ~2.35 A from its neighbours
    with pytest.raises(MLFFDError, match="unknown sampler"):
        plan_recipes(systems, 10, [300], fractions={"bubbles": 0.1})
    with pytest.raises(MLFFDError, match="must not add up to more than 1"):
        plan_recipes(systems, 10, [300], md_fraction=0.5, fractions={"volume": 0.6})


def test_elastic_strains_are_log_uniform_so_half_sit_where_validate_takes_the_tangent():
    """Clean and relaxed strains span 0.2 % to 3 % (normal) / 5 % (shear), log-uniform: half below
    ~0.8 %, near validate's +-0.5 % central differences, not mostly at 1.5-3 % where the stress-strain
    curve bends."""
    from mlffd.data.sampling import ELASTIC_MAX, ELASTIC_MIN, _voigt_strained

    image = bulk("Si", "diamond", a=5.43, cubic=True)
    rng = np.random.default_rng(0)
    for component, top in ((0, ELASTIC_MAX[0]), (4, ELASTIC_MAX[1])):
        strains = np.array([np.abs(np.linalg.solve(image.cell[:], _voigt_strained(image, component, rng).cell[:])
                                   - np.eye(3)).max() * (2 if component >= 3 else 1) for _ in range(400)])
        assert ELASTIC_MIN - 1e-12 <= strains.min() and strains.max() <= top + 1e-12
        assert np.median(strains) == pytest.approx(np.sqrt(ELASTIC_MIN * top), rel=0.15)


def test_distill_recipes_plan_their_parts():
    """`mlffd distill --recipe`: physics plans every sampler the property suite leans on, random none of
    them; fidelity's parts add near-equilibrium and hot frames, never collide in their keys, and
    split any frame budget exactly."""
    from collections import Counter

    from mlffd.data.systems import load_system
    from mlffd.distill import RECIPES, part_plans
    from mlffd.training.config import TrainConfig

    def plans(name, total):
        return [r for part, n, seed in part_plans(RECIPES[name], total, 0)
                for r in plan_recipes([load_system("sio2")], n, list(part.temperatures), seed,
                                      part.md_fraction, part.vacancy_fraction, 0.0, part.fractions)]

    counts = {name: Counter(r.sampler for r in plans(name, 320)) for name in ("random", "physics")}
    assert sum(counts["physics"].values()) == sum(counts["random"].values()) == 320
    assert {"volume", "elastic", "vacancy", "interstitial", "md", "rattle", "strain"} <= set(counts["physics"])
    assert set(counts["random"]) == {"md", "rattle", "strain"}
    assert counts["physics"]["elastic"] == 64 and counts["physics"]["vacancy"] == 48
    for total in (100, 372, 745):
        fidelity = plans("fidelity", total)
        assert len(fidelity) == total and len({r.key for r in fidelity}) == total
    fidelity = plans("fidelity", 440)
    temperatures = Counter(r.temperature for r in fidelity)
    assert temperatures[30.0] + temperatures[100.0] == 80 and temperatures[2000.0] + temperatures[2500.0] == 48
    assert Counter(r.sampler for r in fidelity)["relaxed_strain"] == 32
    assert Counter(r.sampler for r in fidelity)["relaxed_vacancy"] == 12
    for recipe in RECIPES.values():  # every recipe's loss settings are valid training settings
        TrainConfig.from_dict(dict(recipe.train))


def test_teacher_calls_are_counted_as_labelling_makes_them(tmp_path):
    """The estimate distill prints is the calls generate makes: one per label, an MD frame's Langevin
    steps plus its first force call; relaxations at RELAXATION_CALLS each; none for frames already in
    the file."""
    from ase.calculators.emt import EMT

    from mlffd.data.generate import RELAXATION_CALLS, teacher_calls
    from mlffd.data.sampling import TO_RELAX

    assert set(TO_RELAX) < set(RELAXATION_CALLS)  # every relaxed sampler has its count

    class CountingEMT(EMT):
        calls = 0

        def calculate(self, *args, **kwargs):
            CountingEMT.calls += 1
            super().calculate(*args, **kwargs)

    settings = {"temperatures": [300.0, 600.0], "seed": 3, "md_fraction": 0.5, "md_stride": 4}
    out = tmp_path / "d.h5"
    expected = teacher_calls(out, ["cu"], 10, **settings)
    generate_dataset(out, "emt", ["cu"], 10, calculator=CountingEMT(), progress=False, log=lambda *_: None,
                     **settings)
    assert expected == CountingEMT.calls > 10
    assert teacher_calls(out, ["cu"], 10, **settings) == 0
    assert teacher_calls(out, ["cu"], 12, **settings) > 0  # a larger plan's new frames
    relaxed = {"temperatures": [300.0], "md_fraction": 0.0, "fractions": {"relaxed_strain": 0.5}, "relax": True}
    plan_size = teacher_calls(tmp_path / "new.h5", ["cu"], 4, **relaxed)
    # the centre, two relaxed strains, two rattles or strains
    assert plan_size == RELAXATION_CALLS["centre"] + 2 * RELAXATION_CALLS["relaxed_strain"] + 2


def test_distill_warns_when_labelling_alone_passes_the_budget():
    from mlffd.distill import labelling_estimate, seconds_per_teacher_call
    from mlffd.teachers.registry import load_teacher

    estimate, warning = labelling_estimate(6000, 0.7, 48, 30.0)
    assert estimate == {"teacher_calls": 6000, "seconds_per_call": 0.7, "atoms": 48, "minutes": 70.0}
    assert "about 70 minutes" in warning and "30-minute budget" in warning and "--frames" in warning
    assert labelling_estimate(3300, 0.2, 64, 15.0)[1] is None
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    before = atoms.positions.copy()
    assert seconds_per_teacher_call(load_teacher("emt"), atoms) > 0
    assert np.array_equal(atoms.positions, before) and atoms.calc is None


def test_distill_picks_the_student_by_budget():
    """The 2-layer `small` student from a 30-minute budget on, `fast` below; an asked-for preset wins."""
    from mlffd.distill import RECIPES, plan
    from mlffd.training.config import TrainConfig

    assert plan(15.0, None)["preset"] == "fast" and plan(29.9, None)["preset"] == "fast"
    assert plan(30.0, None)["preset"] == "small" and plan(60.0, None)["preset"] == "small"
    assert plan(30.0, None, preset="fast")["preset"] == "fast"
    assert TrainConfig.from_dict({"preset": plan(30.0, None)["preset"]}).model_settings()["num_interactions"] == 2
    # the fidelity recipe's radial basis follows the student: 32 functions for the 2-layer one
    fidelity = RECIPES["fidelity"]
    small = TrainConfig.from_dict(fidelity.train_settings("small")).model_settings()
    fast = TrainConfig.from_dict(fidelity.train_settings("fast")).model_settings()
    assert (small["n_radial"], small["pair_repulsion"]) == (32, True)
    assert (fast["n_radial"], fast["pair_repulsion"]) == (16, False)
    assert fidelity.train_settings("fast")["preset"] == "fast"


def test_distill_scales_si_ladder_by_the_melting_point(tmp_path):
    """Every temperature of the plan is Si's times the structure's melting point over Si's: training
    parts and held-out frames alike; without one, Si's, and a non-Si system is told how to scale them;
    a melting point that cannot be in K is refused in one line."""
    from mlffd.distill import (RECIPES, SI_MELTING_K, TEST_TEMPERATURE, keep_ladder, labelling_jobs, ladder_scale,
                               scaled)

    assert ladder_scale(None, "si") == (1.0, f"Si's ladder (for a crystal that melts near Si's {SI_MELTING_K:g} K)")
    assert ladder_scale(None, "si:3x3x3")[0] == 1.0 and "--melting-point" not in ladder_scale(None, "si")[1]
    assert ladder_scale(None, "cu")[0] == 1.0 and "--melting-point scales it" in ladder_scale(None, "cu")[1]
    scale, why = ladder_scale(933.0, "al")
    assert scale == pytest.approx(933.0 / SI_MELTING_K) and why == "--melting-point 933 K (Si: 1687 K)"
    assert scaled([300.0, 2500.0], scale) == [166.0, 1383.0]
    jobs = labelling_jobs(tmp_path, RECIPES["fidelity"], 100, 10, 0, 5.0, 0.5)
    assert jobs[0][2]["temperatures"] == [150.0, 300.0, 450.0, 750.0]
    assert [t for _, _, kw in jobs[1:-1] for t in kw["temperatures"]] == [15.0, 50.0, 150.0, 300.0, 450.0, 750.0,
                                                                          1000.0, 1250.0, 150.0, 150.0]
    assert jobs[-1][2]["temperatures"] == [TEST_TEMPERATURE / 2]
    for wrong in (0.0, 20000.0):
        with pytest.raises(MLFFDError, match=f"--melting-point is in K, between 50 and 6000; got {wrong:g}"):
            ladder_scale(wrong, "al")
    # a rerun into the same folder keeps the ladder its frames were labelled on
    (tmp_path / "data").mkdir()
    keep_ladder(tmp_path / "data" / "ladder.json", 1.0, "Si's")
    keep_ladder(tmp_path / "data" / "ladder.json", 1.0, "Si's")
    with pytest.raises(MLFFDError, match=r"labelled at Si's temperatures x 1 \(Si's\), this run asks x 0.5531: give "
                                         r"another --out, or the same --melting-point as before"):
        keep_ladder(tmp_path / "data" / "ladder.json", scale, why)
    older = tmp_path / "older" / "data"  # a folder labelled before the ladder was recorded: on Si's
    older.mkdir(parents=True)
    (older / "train.h5").touch()
    with pytest.raises(MLFFDError, match=r"x 1 \(Si's ladder, before the ladder was recorded\), this run asks x 0.5531"):
        keep_ladder(older / "ladder.json", scale, why)
    keep_ladder(older / "ladder.json", 1.0, "Si's")
    assert json.loads((older / "ladder.json").read_text())["scale"] == 1.0
    (tmp_path / "new").mkdir()
    keep_ladder(tmp_path / "new" / "ladder.json", scale, why)
    assert json.loads((tmp_path / "new" / "ladder.json").read_text()) == {"scale": scale, "from": why}


def test_distill_recipe_suits_the_structure(tmp_path):
    """The default recipe is fidelity for a crystal and random for a molecule; a recipe that strains
    the cell is refused for a molecule before any teacher call, with the way out named."""
    from ase.build import molecule
    from ase.io import write

    from mlffd.distill import choose_recipe

    water = tmp_path / "water.xyz"
    write(water, molecule("H2O"))
    assert choose_recipe(None, "si") == "fidelity"
    assert choose_recipe(None, str(water)) == "random"
    assert choose_recipe("random", "si") == "random"
    with pytest.raises(MLFFDError, match="needs a structure periodic in x, y and z.*the recipe 'random'"):
        choose_recipe("fidelity", str(water))


def test_distill_checks_every_stage_before_the_first_teacher_call(tmp_path):
    """A structure file runs every stage on itself (validate and bench take the user's crystal, not
    a built-in); a molecule skips the crystal stages, saying why, up front; elements the teacher
    does not cover are refused before anything runs."""
    from ase.build import molecule
    from ase.io import write

    from mlffd.distill import check_stages

    mgo = tmp_path / "MgO.cif"
    write(mgo, bulk("MgO", "rocksalt", a=4.21))
    water = tmp_path / "water.xyz"
    write(water, molecule("H2O"))
    stages = check_stages(str(mgo), "sevennet-0", None)
    assert (stages.recipe, stages.crystals, stages.deck, stages.skipped) == ("fidelity", (str(mgo),), str(mgo), {})
    builtin = check_stages("si:2x2x2", "sevennet-0", None)
    assert (builtin.crystals, builtin.deck) == (("si",), "si:2x2x2")
    molecule_stages = check_stages(str(water), "sevennet-0", None)
    assert molecule_stages.crystals == () and molecule_stages.deck is None and molecule_stages.recipe == "random"
    assert set(molecule_stages.skipped) == {"validate", "bench"}
    assert all("not periodic in x, y and z" in reason for reason in molecule_stages.skipped.values())
    with pytest.raises(MLFFDError, match=r"teacher emt does not cover element\(s\) Mg of .*MgO.cif"):
        check_stages(str(mgo), "emt", None)


def test_a_file_of_several_structures_is_validated_structure_by_structure(tmp_path):
    """Polymorphs and a slab in one file: one student for all of them (generate takes every
    structure), and validate each crystal (`FILE@N`) while the slab is named as trained on without
    property rows; the stages that take one structure refuse the whole file, naming FILE@N."""
    from ase.build import fcc111
    from ase.io import write

    from mlffd.bench.benchmark import unit_cell
    from mlffd.data.systems import load_system
    from mlffd.distill import check_stages
    from mlffd.validate.properties.crystal import load_crystal

    fcc, bcc, slab = bulk("Cu", "fcc", a=3.61, cubic=True), bulk("Cu", "bcc", a=2.87, cubic=True), fcc111("Cu", (2, 2, 3), vacuum=5.0)
    slab.pbc = (True, True, False)
    path = tmp_path / "cu_forms.extxyz"
    write(path, [fcc, bcc, slab])
    assert len(load_system(str(path)).images) == 3
    one = load_system(f"{path}@1")
    assert len(one.images) == 1 and len(one.images[0]) == len(bcc) and one.name == "cu_forms_1"
    with pytest.raises(MLFFDError, match=r"holds 3 structure\(s\), numbered 0 to 2"):
        load_system(f"{path}@3")
    for stage in (load_crystal, lambda spec: unit_cell(["Cu"], spec)):
        with pytest.raises(MLFFDError, match=rf"holds 3 structures .* takes one: give .*cu_forms.extxyz@0 \.\.\. .*@2"):
            stage(str(path))
    stages = check_stages(str(path), "sevennet-0", None)
    assert stages.crystals == (f"{path}@0", f"{path}@1") and stages.deck == f"{path}@0"
    assert stages.recipe == "random"  # the slab cannot be strained
    assert list(stages.skipped) == [f"validate {path}@2"] and "trained on, no property rows" in stages.skipped[f"validate {path}@2"]
    assert load_crystal(f"{path}@1").unit.cell.lengths()[0] == pytest.approx(2.87)


@pytest.mark.slow
def test_distill_runs_a_structure_file_end_to_end(tmp_path):
    """`mlffd distill --system FILE` with no other flag that matters: a CIF the project does not
    ship (L1_2 Cu3Au, which EMT covers) goes through generate, train, export, validate and bench,
    each on the file's crystal."""
    from ase.io import write

    cu3au = bulk("Cu", "fcc", a=3.75, cubic=True)
    cu3au[0].symbol = "Au"
    path = tmp_path / "Cu3Au.cif"
    write(path, cu3au)
    out = tmp_path / "out"
    assert main(["distill", "--system", str(path), "--teacher", "emt", "--budget", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["properties"] and summary["skipped"] == {}
    plan = summary["plan"]  # every choice made for the file, kept beside the results
    assert "repeated 2x2x2 (4 -> 32 atoms)" in plan["supercell"] and plan["validated"] == [str(path)]
    ladder = plan["temperatures_K"]  # Si's, and how to scale them, kept beside the results
    assert ladder["validate"] == [1200.0, 2000.0] and ladder["scale"] == 1.0 and "--melting-point" in ladder["from"]
    assert plan["recipe"] == "fidelity"
    assert f"- system: {path};" in (out / "bench" / "bench.md").read_text()
    assert (out / "in.lammps").exists()


@pytest.mark.slow
def test_distill_validates_each_crystal_of_a_file(tmp_path):
    """Two Cu polymorphs in one file: one student, one report per crystal, every row named by its
    structure in the summary, the deck from the first."""
    from ase.io import write

    path = tmp_path / "cu_forms.extxyz"
    write(path, [bulk("Cu", "fcc", a=3.61, cubic=True), bulk("Cu", "bcc", a=2.87, cubic=True)])
    out = tmp_path / "out"
    assert main(["distill", "--system", str(path), "--teacher", "emt", "--budget", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {row["system"] for row in summary["properties"]} == {f"{path}@0", f"{path}@1"}
    for name in ("cu_forms_0", "cu_forms_1"):
        assert (out / "report" / name / "report.md").exists()
    assert f"- system: {path}@0;" in (out / "bench" / "bench.md").read_text()
    assert (out / "in.lammps").exists()


def test_relax_samples_around_the_teachers_minimum(tmp_path):
    """`relax=True` centres the frames on the teacher's relaxed structure (EMT's Cu cell is smaller
    than the built-in a = 3.615 A, which holds about 2 GPa of tension under EMT), under keys of their own."""
    from mlffd.data.dataset import open_dataset
    from mlffd.data.generate import generate_dataset

    def rattles(name, relax):
        path = tmp_path / f"{name}.h5"
        generate_dataset(path, "emt", ["cu"], 6, temperatures=[30.0], md_fraction=0.0, relax=relax, progress=False,
                         log=lambda *_: None)
        ds = open_dataset(path)
        frames = [ds.frame(i) for i in range(len(ds))]
        return ds.keys(), [f for f in frames if f["sampler"] == "rattle"]

    keys, given = rattles("given", False)
    relaxed_keys, relaxed = rattles("relaxed", True)
    assert all(k.startswith("cu/") for k in keys) and all(k.startswith("cu@relaxed/") for k in relaxed_keys)
    pressure = lambda frames: np.mean([f["stress"][:3].mean() for f in frames])  # noqa: E731 (tension > 0, eV/A^3)
    assert pressure(given) > 0.01  # in tension: the built-in lattice is not EMT's
    assert abs(pressure(relaxed)) < 0.1 * pressure(given)
    volume = lambda f: abs(np.linalg.det(f["cell"]))  # noqa: E731
    assert volume(relaxed[0]) < volume(given[0])


def test_relaxed_strain_frames_are_strained_cells_with_the_teachers_relaxed_ions(tmp_path):
    """relaxed_strain: each frame's cell is the image's under one Voigt component (or a volume change,
    every seventh), and its ions sit where the teacher's forces vanish (relaxed in that cell)."""
    from mlffd.data.dataset import open_dataset
    from mlffd.data.generate import RELAX_FMAX, generate_dataset
    from mlffd.data.systems import load_system

    path = tmp_path / "rs.h5"
    generate_dataset(path, "emt", ["cu"], 7, temperatures=[300.0], md_fraction=0.0,
                     fractions={"relaxed_strain": 1.0}, progress=False, log=lambda *a: None)
    image = load_system("cu").images[0]
    frames = open_dataset(path).frames()
    assert len(frames) == 7 and {f["sampler"] for f in frames} == {"relaxed_strain"}
    kinds = []
    for f in frames:
        strain = np.linalg.solve(image.cell[:], f["cell"]) - np.eye(3)
        strain = 0.5 * (strain + strain.T)
        assert np.abs(f["forces"]).max() < RELAX_FMAX * 1.01
        off = np.abs(strain - np.diag(np.diag(strain)))
        diag = np.diag(strain)
        if np.allclose(diag, diag[0]) and off.max() < 1e-12 and abs(diag[0]) > 1e-9:
            kinds.append("volume")
        else:
            assert np.count_nonzero(np.abs(strain) > 1e-12) in (1, 2)  # one normal or one shear component
            kinds.append("voigt")
    assert kinds.count("volume") == 1


def test_a_structure_files_small_cell_is_repeated_until_the_cutoff_fits(tmp_path):
    """A user's file with a cell narrower than the student's cutoff (rock-salt conventional cell,
    4.2 A) is sampled as a supercell in which no atom sees its own image (2x2x2 for 5 A), under a
    name of its own; a slab's open direction is never repeated; built-ins keep their supercell."""
    import ase.io
    from ase.build import bulk, fcc111

    from mlffd.data.dataset import open_dataset
    from mlffd.data.generate import generate_dataset
    from mlffd.data.systems import load_system, periodic_widths, supercell_repeats, with_supercells

    rocksalt = bulk("Cu", "fcc", a=4.2, cubic=True)
    path = tmp_path / "CuX.cif"
    ase.io.write(path, rocksalt)
    lines = []
    generate_dataset(tmp_path / "d.h5", "emt", [str(path)], 2, temperatures=[300.0], md_fraction=0.0,
                     supercell_width=5.0, progress=False, log=lines.append)
    frames = open_dataset(tmp_path / "d.h5").frames()
    assert all(len(f["numbers"]) == 32 for f in frames)
    assert all(f["key"].startswith("CuX_2x2x2/") for f in frames)
    assert any("repeated 2x2x2 (4 -> 32 atoms)" in line and "5 A" in line for line in lines)

    slab = fcc111("Cu", (1, 1, 3), a=3.6, vacuum=5.0)  # periodic in x and y only
    assert set(periodic_widths(slab)) == {0, 1}
    assert supercell_repeats(slab, 5.0)[2] == 1 and min(supercell_repeats(slab, 5.0)[:2]) >= 2
    triclinic = bulk("Cu", "fcc", a=3.6)  # primitive fcc: widths a/sqrt(3) = 2.08 A
    assert supercell_repeats(triclinic, 5.0) == (3, 3, 3)
    builtin = load_system("cu")
    assert with_supercells(builtin, 50.0) == (builtin, None)


def test_relaxed_vacancy_frames_are_the_teachers_relaxed_vacancy_in_the_unstrained_cell(tmp_path):
    """relaxed_vacancy: one atom fewer than the image, the image's cell, ions where the teacher's
    forces vanish, and an energy below the unrelaxed vacancy's (the relaxation E_vac includes)."""
    from mlffd.data.dataset import open_dataset
    from mlffd.data.generate import RELAX_FMAX, generate_dataset
    from mlffd.data.sampling import plan_recipes, vacancy_to_relax
    from mlffd.data.systems import load_system
    from mlffd.teachers import load_teacher

    path = tmp_path / "rv.h5"
    generate_dataset(path, "emt", ["cu"], 3, temperatures=[300.0], md_fraction=0.0,
                     fractions={"relaxed_vacancy": 1.0}, progress=False, log=lambda *a: None)
    system = load_system("cu")
    image = system.images[0]
    frames = open_dataset(path).frames()
    starts = [vacancy_to_relax(image, r) for r in plan_recipes([system], 3, [300.0], md_fraction=0.0,
                                                               fractions={"relaxed_vacancy": 1.0})]
    assert len(frames) == 3 and {f["sampler"] for f in frames} == {"relaxed_vacancy"}
    calc = load_teacher("emt")
    for f, start in zip(frames, starts):
        assert len(f["numbers"]) == len(image) - 1
        np.testing.assert_allclose(f["cell"], image.cell[:], atol=1e-12)
        assert np.abs(f["forces"]).max() < RELAX_FMAX * 1.01
        start.calc = calc
        assert f["energy"] < start.get_potential_energy() - 1e-3


def test_vacancy_md_chains_run_teacher_md_with_one_atom_of_each_element_missing(tmp_path):
    """vacancy_md: a chain per element and temperature, each frame one atom short of the image (an atom
    of the chain's element), each continuing the previous frame of its chain (stored velocities), labelled
    by the teacher at its final positions; a plan without the sampler keeps its old keys."""
    from ase.io import write

    from mlffd.data.sampling import MD_SAMPLERS
    from mlffd.teachers import load_teacher

    cu3au = bulk("Cu", "fcc", a=3.75, cubic=True)
    cu3au[0].symbol = "Au"
    cu3au = cu3au.repeat(2)
    structure = tmp_path / "Cu3Au.cif"
    write(structure, cu3au)
    path = tmp_path / "vmd.h5"
    generate_dataset(path, "emt", [str(structure)], 4, temperatures=[800.0], md_fraction=0.0, md_stride=3,
                     fractions={"vacancy_md": 1.0}, progress=False, log=lambda *a: None)
    frames = open_dataset(path).frames()
    assert {f["sampler"] for f in frames} == {"vacancy_md"} and "vacancy_md" in MD_SAMPLERS
    chains = {}
    for f in frames:
        element = f["key"].split("/")[-2]
        chains.setdefault(element, []).append(f)
    assert sorted(chains) == ["Au", "Cu"] and all(len(c) == 2 for c in chains.values())
    image_counts = {"Au": 8, "Cu": 24}
    calc = load_teacher("emt")
    for element, chain in chains.items():
        for f in chain:
            symbols = Atoms(numbers=f["numbers"]).get_chemical_symbols()
            assert symbols.count(element) == image_counts[element] - 1 and len(symbols) == 31
            atoms = Atoms(numbers=f["numbers"], positions=f["positions"], cell=f["cell"], pbc=True)
            atoms.calc = calc
            np.testing.assert_allclose(f["forces"], atoms.get_forces(), atol=1e-6)
        # the second frame continues the first: moved on from it, by its own velocities' order of magnitude
        step = np.abs(chain[1]["positions"] - chain[0]["positions"]).max()
        assert 1e-3 < step < 1.0 and np.abs(chain[0]["velocities"]).max() > 0
    old = plan_recipes(load_systems(["si"]), 12, [300.0, 900.0], md_fraction=0.25, fractions={"volume": 0.25})
    assert not any(r.element for r in old) and all("/Si/" not in r.key for r in old)
