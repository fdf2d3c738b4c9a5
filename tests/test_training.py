"""`mlffd train`: runs, resumes after kill -9 to the same result, refuses bad input clearly."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from mlffd.data.writer import DatasetWriter
from mlffd.training.trainer import VALIDATE_EVERY
from mlffd.training.trainset import split_indices

# EMT is a cheap stand-in labeller: these tests check the training machinery, not a teacher.


def write_dataset(path, n_frames=10, symbols=None, seed=0):
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, "emt", "ase-emt") as writer:
        for i in range(n_frames):
            symbol = symbols[i] if symbols else "Cu"
            atoms = bulk(symbol, "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
            atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
            atoms.calc = EMT()
            atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
            writer.append(atoms, sampler="rattle", temperature=300.0, seed=i, key=f"t/{i}")
    return path


def train_cmd(data, out, *extra):
    config = out.parent / "small-data.yaml"  # few frames: short EMA memory, small batches
    config.write_text("preset: tiny\nbatch_size: 2\nema_decay: 0.8\nlr: 0.01\n")
    return [sys.executable, "-m", "mlffd.cli", "train", str(data), "--out", str(out), "--config", str(config),
            "--quiet", *extra]


def test_train_writes_run_folder_and_learns(tmp_path):
    data = write_dataset(tmp_path / "d.h5")
    out = tmp_path / "run"
    subprocess.run(train_cmd(data, out, "--epochs", "25"), check=True, capture_output=True)
    for name in ("config.yaml", "checkpoint.pt", "best.pt", "metrics.csv", "metrics.json", "parity.png"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 26))
    assert float(rows[-1]["val_force_mae"]) < 0.5 * float(rows[0]["val_force_mae"])
    # the first, every VALIDATE_EVERY-th and the last epoch validated; best.pt is one of them
    validated = [int(r["epoch"]) for r in rows if r["val_force_mae"]]
    assert validated == [1, *range(VALIDATE_EVERY, 26, VALIDATE_EVERY), 25]
    assert torch.load(out / "best.pt", weights_only=False)["metrics"]["mae"] == min(
        float(r["val_force_mae"]) for r in rows if r["val_force_mae"])


def test_resume_after_kill_gives_the_uninterrupted_result(tmp_path):
    data = write_dataset(tmp_path / "d.h5")
    epochs = ["--epochs", "40"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    reference = tmp_path / "straight"
    subprocess.run(train_cmd(data, reference, *epochs), check=True, capture_output=True, env=env)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(data, killed, *epochs), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (killed / "checkpoint.pt").exists():
            try:
                if torch.load(killed / "checkpoint.pt", weights_only=False)["epoch"] >= 5:
                    break
            except Exception:  # caught mid-replace: try again
                pass
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert 5 <= state["epoch"] < 40, "the kill must land mid-run"
    subprocess.run(train_cmd(data, killed, *epochs), check=True, capture_output=True, env=env)

    a = torch.load(reference / "best.pt", weights_only=False)["model"]
    b = torch.load(killed / "best.pt", weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    rows = list(csv.DictReader(open(killed / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 41))


def run_train(*args):
    return subprocess.run([sys.executable, "-m", "mlffd.cli", "train", *map(str, args)], capture_output=True,
                          text=True)


def test_unknown_config_key_is_named(tmp_path):
    data = write_dataset(tmp_path / "d.h5", n_frames=3)
    config = tmp_path / "c.yaml"
    config.write_text("lr: 0.01\nlearning_rate_typo: 3\n")
    result = run_train(data, "--out", tmp_path / "r", "--config", config)
    assert result.returncode == 2
    assert "unknown config key 'learning_rate_typo'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_model_settings_are_the_students_own_fields():
    """TrainConfig hands the student its settings by the student's field names, a preset filling
    the shape and the student's own defaults the rest (one owner of each default)."""
    import dataclasses

    from mlffd.model.student import StudentConfig
    from mlffd.training.config import PRESETS, TrainConfig

    fields = {f.name: f.default for f in dataclasses.fields(StudentConfig)}
    for preset, shape in PRESETS.items():
        settings = TrainConfig(preset=preset).model_settings()
        assert set(settings) <= set(fields)
        assert {key: settings[key] for key in shape} == shape
        assert {key: settings[key] for key in set(settings) - set(shape)} == {
            key: fields[key] for key in set(settings) - set(shape)}


def test_empty_dataset_is_refused(tmp_path):
    with DatasetWriter(tmp_path / "empty.h5", "emt", "ase-emt"):
        pass
    result = run_train(tmp_path / "empty.h5", "--out", tmp_path / "r")
    assert result.returncode == 2 and "0 frame" in result.stderr


def test_element_only_in_validation_is_refused(tmp_path):
    n = 11
    _, valid = split_indices(n, 0.1, seed=0)
    symbols = ["Cu"] * n
    symbols[int(valid[0])] = "Ni"
    data = write_dataset(tmp_path / "d.h5", n_frames=n, symbols=symbols)
    result = run_train(data, "--out", tmp_path / "r", "--seed", "0")
    assert result.returncode == 2 and "Ni" in result.stderr and "never in training" in result.stderr


def test_diverging_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    data = write_dataset(tmp_path / "d.h5", n_frames=6)
    out = tmp_path / "r"
    assert run_train(data, "--out", out, "--preset", "tiny", "--epochs", "2").returncode == 0
    before = (out / "checkpoint.pt").read_bytes()
    config = tmp_path / "c.yaml"
    config.write_text("preset: tiny\nlr: 1.0e+30\ngrad_clip: 1.0e+30\nepochs: 4\n")
    result = run_train(data, "--out", tmp_path / "r2", "--config", config)
    assert result.returncode == 2 and "loss became" in result.stderr
    assert (out / "checkpoint.pt").read_bytes() == before


def test_displaced_pairs_are_planned_sampled_and_batched_together():
    from mlffd.data.sampling import PAIR_STEP, plan_recipes, sample_pair
    from mlffd.data.systems import load_systems
    from mlffd.training.trainset import pair_units

    systems = load_systems(["si:1x1x1"])
    plan = plan_recipes(systems, 12, [300.0, 900.0], seed=0, md_fraction=0.0, pair_fraction=0.5)
    pairs = {r.key: r for r in plan if r.sampler == "pair"}
    assert len(pairs) == 6 and all(k[:-1] + "b" in pairs for k in pairs if k.endswith("a"))
    key = next(k for k in pairs if k.endswith("a"))
    a = sample_pair(systems[0].images[0], pairs[key], 0)
    b = sample_pair(systems[0].images[0], pairs[key[:-1] + "b"], 0)
    rms = np.sqrt(np.mean(np.sum((b.positions - a.positions) ** 2, axis=1)))
    assert rms == pytest.approx(PAIR_STEP, rel=1e-9)
    keys = [r.key for r in plan]
    units = pair_units(keys)
    assert sorted(i for u in units for i in u) == list(range(len(keys)))
    assert sum(len(u) == 2 for u in units) == 3
    for unit in units:
        if len(unit) == 2:
            assert keys[unit[0]].endswith("a") and keys[unit[1]] == keys[unit[0]][:-1] + "b"


def test_command_line_budget_completes_a_config_file(tmp_path):
    """A settings file without a budget (`epochs: null`, no time budget) is completed by `--epochs`
    instead of refused before the option is seen; with neither, the refusal names the problem."""
    import argparse

    from mlffd.errors import MLFFDError
    from mlffd.training.cli import config_from_args

    config = tmp_path / "weights.yaml"
    config.write_text("epochs: null\ntime_budget_minutes: null\nstress_weight: 100.0\n")
    args = argparse.Namespace(config=str(config), preset=None, epochs=7, time_budget=None, seed=None)
    cfg = config_from_args(args)
    assert cfg.epochs == 7 and cfg.stress_weight == 100.0
    with pytest.raises(MLFFDError, match="give epochs or time_budget_minutes"):
        config_from_args(argparse.Namespace(**{**vars(args), "epochs": None}))


def test_teacher_per_atom_energies_are_stored_and_sum_to_the_energy(tmp_path):
    """The teacher's per-atom energies (EMT reports them) travel teacher -> dataset -> frame; a file
    written before the field existed reads as having none and takes new frames that have them."""
    import h5py

    from mlffd.data.dataset import open_dataset
    from mlffd.teachers import load_teacher

    teacher = load_teacher("emt")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=3)
    del atoms[5]  # a vacancy: per-atom energies differ from atom to atom
    atoms.calc = teacher
    energy = atoms.get_potential_energy()
    energies = teacher.results["energies"]
    assert energies.shape == (len(atoms),) and np.ptp(energies) > 1e-3
    assert energies.sum() == pytest.approx(energy, abs=1e-10)

    path = tmp_path / "d.h5"
    with DatasetWriter(path, "emt", "v") as writer:
        writer.append(atoms, sampler="vacancy", temperature=300.0, seed=0, key="k/0")
    np.testing.assert_array_equal(open_dataset(path).frame(0)["atom_energies"], energies)

    with h5py.File(path, "a") as f:  # the layout before per-atom energies existed
        del f["atoms"]["atom_energies"]
    assert open_dataset(path).frame(0)["atom_energies"] is None
    with DatasetWriter(path, "emt", "v") as writer:
        writer.append(atoms, sampler="vacancy", temperature=300.0, seed=1, key="k/1")
    ds = open_dataset(path)
    assert ds.frame(0)["atom_energies"] is None
    np.testing.assert_array_equal(ds.frame(1)["atom_energies"], energies)

    with DatasetWriter(path, "emt", "v") as writer, pytest.raises(Exception, match="sum to the energy"):
        writer.append(atoms, sampler="vacancy", temperature=300.0, seed=2, key="k/2", energy=energy,
                      forces=atoms.get_forces(), atom_energies=energies + 0.01)


def _loss_terms(tmp_path, cfg_changes):
    from mlffd.data.dataset import open_dataset
    from mlffd.model.registry import build_model, make_config
    from mlffd.training.config import TrainConfig
    from mlffd.training.graphs import build_graphs, collate, predict
    from mlffd.training.step import loss_fn

    path = tmp_path / "w.h5"
    frames = open_dataset(path if path.exists() else write_dataset(path, n_frames=3)).frames()
    cfg = TrainConfig.from_dict({"preset": "tiny", **cfg_changes})
    torch.manual_seed(0)
    model = build_model(make_config({"elements": ["Cu"], **cfg.model_settings()}).to_dict()).double()
    batch = collate(build_graphs(frames, ["Cu"], cfg.cutoff, cfg.sampler_weights), torch.float64)
    pred = predict(model, batch, create_graph=False)
    return loss_fn(pred, batch, cfg).item(), pred, batch


def test_per_atom_energy_and_sampler_weights_enter_the_loss_as_stated(tmp_path):
    base, pred, batch = _loss_terms(tmp_path, {})
    assert bool(batch["has_atom_energy"].all())
    with_atoms, _, _ = _loss_terms(tmp_path, {"atom_energy_weight": 2.5})
    by_hand = 2.5 * torch.mean((pred["atom_energy"] - batch["atom_energy"]) ** 2).item()
    assert with_atoms - base == pytest.approx(by_hand, rel=1e-9)
    tripled, _, _ = _loss_terms(tmp_path, {"sampler_weights": {"rattle": 3.0}, "atom_energy_weight": 2.5})
    assert tripled == pytest.approx(3.0 * with_atoms, rel=1e-9)


def test_sampler_force_weights_scale_the_force_term_of_their_frames_only(tmp_path):
    """sampler_force_weights multiply the force weight (after relative force errors) of the frames
    their sampler made, and leave every other frame and every other term alone."""
    from mlffd.training.config import TrainConfig
    from mlffd.training.trainer import Trainer
    from mlffd.training.trainset import split_indices

    rng = np.random.default_rng(0)
    kinds = ["rattle", "relaxed_strain"] * 4
    with DatasetWriter(tmp_path / "two.h5", "emt", "ase-emt") as writer:
        for i, kind in enumerate(kinds):
            atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
            atoms.positions += rng.normal(0, 0.08 if kind == "rattle" else 0.01, atoms.positions.shape)
            atoms.calc = EMT()
            atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
            writer.append(atoms, sampler=kind, temperature=300.0, seed=i, key=f"t/{i}")

    def trainer(name, **changes):
        cfg = TrainConfig.from_dict({"preset": "tiny", "epochs": 1, "relative_force_floor": 0.1, **changes})
        return Trainer(str(tmp_path / "two.h5"), str(tmp_path / name), cfg), cfg

    (plain, cfg), (scaled, _) = trainer("a"), trainer("b", sampler_force_weights={"relaxed_strain": 0.25})
    train_kinds = [kinds[i] for i in split_indices(len(kinds), cfg.valid_fraction, cfg.seed)[0]]
    assert set(train_kinds) == {"rattle", "relaxed_strain"}
    for kind, a, b in zip(train_kinds, plain.train_graphs, scaled.train_graphs):
        factor = 0.25 if kind == "relaxed_strain" else 1.0
        assert float(b["force_weight"]) == pytest.approx(factor * float(a["force_weight"]), rel=1e-12)
        assert float(b["frame_weight"]) == float(a["frame_weight"]) == 1.0


def test_relative_stress_floor_weighs_each_frame_by_its_own_stress(tmp_path):
    """relative_stress_floor gives a small strain's stress the weight of a large one's: each frame's
    stress weight is (<sigma^2> of all + floor^2) / (<sigma^2> of the frame + floor^2), sigma in GPa,
    and the stress term of the loss is that weight times the plain one, frame by frame."""
    from ase import units

    from mlffd.errors import MLFFDError
    from mlffd.training.config import TrainConfig
    from mlffd.training.graphs import predict
    from mlffd.training.step import loss_fn
    from mlffd.training.trainer import Trainer

    strains = [0.002, 0.005, 0.01, 0.02, 0.03, 0.04, -0.01, -0.03]
    with DatasetWriter(tmp_path / "strains.h5", "emt", "ase-emt") as writer:
        for i, eps in enumerate(strains):
            atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
            atoms.set_cell(atoms.cell * [1 + eps, 1, 1], scale_atoms=True)
            atoms.calc = EMT()
            atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
            writer.append(atoms, sampler="elastic", temperature=1.0, seed=i, key=f"e/{i}")

    def trainer(name, **changes):
        cfg = TrainConfig.from_dict({"preset": "tiny", "epochs": 1, "stress_weight": 1.0, **changes})
        return Trainer(str(tmp_path / "strains.h5"), str(tmp_path / name), cfg), cfg

    (plain, cfg), (relative, rcfg) = trainer("a"), trainer("b", relative_stress_floor=0.5)
    sq = [float(torch.mean((g["virial"] / g["volume"] / units.GPa) ** 2)) for g in relative.train_graphs]
    expected = [(np.mean(sq) + 0.25) / (x + 0.25) for x in sq]
    weights = [float(g["stress_weight"]) for g in relative.train_graphs]
    assert weights == pytest.approx(expected, rel=1e-9)
    assert max(weights) > 5 * min(weights)  # the smallest strain counts far more than the largest
    assert all(float(g["stress_weight"]) == 1.0 for g in plain.train_graphs)
    # the stress term alone (energy and force weights 0): frame by frame, the weight times the plain term
    for a, b in zip(plain.train_graphs, relative.train_graphs):
        batch_a, batch_b = (t._batches([g], shuffle=False)[0] for t, g in ((plain, a), (relative, b)))
        only_stress = TrainConfig.from_dict({"preset": "tiny", "energy_weight": 0.0, "force_weight": 0.0})
        pred = predict(plain.model, batch_a, create_graph=False)
        assert loss_fn(pred, batch_b, only_stress).item() == pytest.approx(
            float(b["stress_weight"]) * loss_fn(pred, batch_a, only_stress).item(), rel=1e-6)
    with pytest.raises(MLFFDError, match="relative_stress_floor must be a number > 0"):
        TrainConfig.from_dict({"relative_stress_floor": 0.0}).validate()


def test_products_widen_the_invariants_only(tmp_path):
    """`products` sets the invariant products per degree: the mixing and the update MLP grow, the
    edge path (radial network, channels) does not; a bad value is refused in one line."""
    from mlffd.errors import MLFFDError
    from mlffd.model.registry import build_model, make_config
    from mlffd.training.config import TrainConfig

    def model(**changes):
        cfg = TrainConfig.from_dict({"preset": "fast", **changes})
        return build_model(make_config({"elements": ["Si"], **cfg.model_settings()}).to_dict())

    plain, wide = model(), model(products=64)
    assert plain.interactions[0].update[0].in_features == 2 * 16 + 3 * 16
    assert wide.interactions[0].update[0].in_features == 2 * 16 + 3 * 64
    assert wide.radial[-1].out_features == plain.radial[-1].out_features
    for bad in (0, 2.5, "many"):
        with pytest.raises(MLFFDError, match="products must be a whole number >= 1"):
            TrainConfig.from_dict({"products": bad})


def test_label_options_the_data_cannot_serve_are_refused(tmp_path):
    import h5py

    data = write_dataset(tmp_path / "d.h5")
    result = run_train(str(data), "--out", str(tmp_path / "r1"), "--epochs", "1", "--config",
                       str(_config(tmp_path, "sampler_weights: {elastic: 5.0}\n")))
    assert result.returncode != 0 and "sampler_weights names elastic" in result.stderr
    with h5py.File(data, "a") as f:
        del f["atoms"]["atom_energies"]
    result = run_train(str(data), "--out", str(tmp_path / "r2"), "--epochs", "1", "--config",
                       str(_config(tmp_path, "atom_energy_weight: 1.0\n")))
    assert result.returncode != 0 and "has no per-atom energies" in result.stderr
    result = run_train(str(data), "--out", str(tmp_path / "r3"), "--epochs", "1", "--config",
                       str(_config(tmp_path, "sampler_weights: {rattle: -1}\n")))
    assert result.returncode != 0 and "must be a number >= 0" in result.stderr
    result = run_train(str(data), "--out", str(tmp_path / "r4"), "--epochs", "1", "--config",
                       str(_config(tmp_path, "sampler_force_weights: {md: 0.5}\n")))
    assert result.returncode != 0 and "sampler_force_weights names md" in result.stderr


def _config(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text("preset: tiny\n" + text)
    return path


def test_relative_force_weights_even_out_frames_of_small_and_large_forces():
    from mlffd.training.trainset import set_relative_force_weights

    small = {"forces": torch.full((4, 3), 0.1, dtype=torch.float64), "species": torch.zeros(4, dtype=torch.long)}
    large = {"forces": torch.full((4, 3), 1.0, dtype=torch.float64), "species": torch.zeros(4, dtype=torch.long)}
    set_relative_force_weights([small, large], floor=0.1)
    overall = (0.03 + 3.0) / 2
    assert float(small["force_weight"]) == pytest.approx((overall + 0.01) / (0.03 + 0.01))
    assert float(large["force_weight"]) == pytest.approx((overall + 0.01) / (3.0 + 0.01))
    # the weighted squared error of a 10 % force error is now about equal for both frames
    err_small = float(small["force_weight"]) * 0.03 * 0.01
    err_large = float(large["force_weight"]) * 3.0 * 0.01
    assert err_small / err_large == pytest.approx(1.0, rel=0.3)


def test_displaced_pair_labels_are_the_teachers_hessian_vector_product():
    """The force difference of a displaced pair over PAIR_STEP (what `hessian_weight` fits) is the
    teacher's Hessian-vector product: checked against central differences of EMT forces at 1e-4 A."""
    from mlffd.data.sampling import PAIR_STEP, plan_recipes, sample_pair
    from mlffd.data.systems import load_systems
    from mlffd.teachers import load_teacher

    systems = load_systems(["cu:2x2x2"])
    plan = plan_recipes(systems, 2, [600.0], seed=0, md_fraction=0.0, pair_fraction=1.0)
    a = sample_pair(systems[0].images[0], plan[0], 0)
    b = sample_pair(systems[0].images[0], plan[1], 0)
    teacher = load_teacher("emt")

    def forces(positions):
        atoms = a.copy()
        atoms.positions = positions
        atoms.calc = teacher
        return atoms.get_forces()

    direction = (b.positions - a.positions) / PAIR_STEP
    pair_hvp = (forces(b.positions) - forces(a.positions)) / PAIR_STEP
    h = 1e-4
    midpoint = a.positions + 0.5 * PAIR_STEP * direction
    central = (forces(midpoint + h * direction) - forces(midpoint - h * direction)) / (2 * h)
    assert np.abs(pair_hvp).max() > 0.1  # a real signal, eV/A^2
    assert np.abs(pair_hvp - central).max() < 1e-3 * np.abs(central).max() + 1e-6


def _mixed_dataset(path):
    """Rattled Cu crystals, vacancies and slabs (atoms of unequal neighbour counts: padded batches),
    EMT-labelled with stresses and per-atom energies."""
    from ase.build import fcc111

    rng = np.random.default_rng(1)
    vacancy = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    del vacancy[5]
    slab = fcc111("Cu", (2, 2, 4), a=3.6, vacuum=4.0, periodic=True)
    with DatasetWriter(path, "emt", "ase-emt") as writer:
        for i, atoms in enumerate([bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2)), vacancy, slab] * 2):
            atoms = atoms.copy()
            atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
            atoms.calc = EMT()
            atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
            writer.append(atoms, sampler="rattle", temperature=300.0, seed=i, key=f"m/{i}")
    return str(path)


@pytest.mark.parametrize("preset", ["fast", "small"])
def test_padded_edges_give_the_edge_lists_loss_and_gradient(tmp_path, preset):
    """Training lays a batch's edges out atom by atom for dense kernels (graphs.pad_edges); the loss
    and its gradient must be the edge list's, to float64 rounding, with atoms of unequal neighbour
    counts (a vacancy and a slab's surface beside a rattled crystal) so that padding happens."""
    from mlffd.training.config import TrainConfig
    from mlffd.training.graphs import predict
    from mlffd.training.step import loss_fn
    from mlffd.training.trainer import Trainer

    cfg = TrainConfig.from_dict({"preset": preset, "dtype": "float64", "batch_size": 6,
                                 "energy_weight": 300.0, "stress_weight": 10.0, "relative_force_floor": 0.2})
    trainer = Trainer(_mixed_dataset(tmp_path / "mixed.h5"), str(tmp_path / "run"), cfg)
    assert trainer.pad_cutoff == cfg.cutoff
    padded = trainer._batches(trainer.train_graphs, shuffle=False)[0]
    trainer.pad_cutoff = None
    edge_list = trainer._batches(trainer.train_graphs, shuffle=False)[0]
    degree = torch.bincount(edge_list["edge_index"][0], minlength=len(edge_list["species"]))
    k = int(padded["neighbours_per_atom"])
    assert k == int(degree.max()) > int(degree.min())
    assert padded["edge_index"].shape[1] == k * len(padded["species"]) > edge_list["edge_index"].shape[1]

    params = list(trainer.model.parameters())
    results = []
    for batch in (edge_list, padded):
        pred = predict(trainer.model, batch, create_graph=True)
        loss = loss_fn(pred, batch, cfg)
        results.append((pred, loss, torch.autograd.grad(loss, params)))
    (pred_a, loss_a, grad_a), (pred_b, loss_b, grad_b) = results
    for key in ("energy", "forces", "virial"):
        torch.testing.assert_close(pred_b[key], pred_a[key], rtol=1e-10, atol=1e-10)
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-10)
    for a, b in zip(grad_a, grad_b):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_compiled_step_gives_the_eager_loss_and_gradient(tmp_path):
    """compile: true traces the loss and its weight gradient into one graph (mlffd.training.step); its
    numbers must be the eager step's to float64 rounding, batch after batch of different sizes (one
    graph for all), on padded batches of a 2-layer student with the ZBL wall and every loss term."""
    from mlffd.training.config import TrainConfig
    from mlffd.training.step import GradientStep
    from mlffd.training.trainer import Trainer

    cfg = TrainConfig.from_dict({"preset": "small", "pair_repulsion": True, "dtype": "float64", "batch_size": 2,
                                 "energy_weight": 300.0, "stress_weight": 10.0, "relative_force_floor": 0.2,
                                 "atom_energy_weight": 1.0, "epochs": 1, "compile": True})
    trainer = Trainer(_mixed_dataset(tmp_path / "mixed.h5"), str(tmp_path / "run"), cfg)
    batches = trainer._batches(trainer.train_graphs, shuffle=False)
    assert sorted({len(b["n_atoms"]) for b in batches}) == [1, 2]
    eager, compiled = GradientStep(trainer.model, cfg), GradientStep(trainer.model, cfg)
    compiled.compile(must=True)
    for batch in batches:
        loss_eager = eager(batch)
        grad_eager = [p.grad.clone() for p in trainer.model.parameters()]
        loss_compiled = compiled(batch)
        assert loss_compiled.item() == pytest.approx(loss_eager.item(), rel=1e-10)
        for p, g in zip(trainer.model.parameters(), grad_eager):
            torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)
    assert compiled.compiled is not None
    trainer.step = compiled  # (compiling again would only cost time)
    summary = trainer.run(quiet=True)
    assert trainer.step.compiled is not None and summary["epochs"] == 1


def test_a_step_that_cannot_compile_says_so_or_trains_uncompiled(tmp_path, monkeypatch):
    """compile: true on a machine where torch.compile fails is a one-line error; compile: null (the
    default) warns once and trains uncompiled; short runs never compile."""
    from mlffd.errors import MLFFDError
    from mlffd.training import step as step_module
    from mlffd.training.config import TrainConfig
    from mlffd.training.trainer import Trainer

    data = str(write_dataset(tmp_path / "d.h5", n_frames=4))

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")
        return call

    short = Trainer(data, str(tmp_path / "short"), TrainConfig.from_dict({"preset": "tiny", "epochs": 2}))
    short.run(quiet=True)
    assert not short.step.attempted
    monkeypatch.setattr(step_module.torch, "compile", broken)
    must = Trainer(data, str(tmp_path / "must"), TrainConfig.from_dict({"preset": "tiny", "epochs": 2, "compile": True}))
    with pytest.raises(MLFFDError, match=r"compile the training step .*No working C\+\+ compiler found\); set compile: false"):
        must.run(quiet=True)
    monkeypatch.setattr(step_module, "COMPILE_PAYBACK_S", 0.0)
    auto = Trainer(data, str(tmp_path / "auto"), TrainConfig.from_dict({"preset": "tiny", "epochs": 3}))
    with pytest.warns(UserWarning, match="training goes on uncompiled"):
        summary = auto.run(quiet=True)
    assert auto.step.attempted and auto.step.compiled is None and summary["epochs"] == 3


def test_a_time_budget_counts_training_not_the_compile(tmp_path, monkeypatch):
    """The one-off compile (here a stand-in that takes 3 s on its first call, then runs the step
    uncompiled) is left out of the time budget and reported as compile_s: a cold inductor cache and a
    warm one train the same minutes."""
    import time as clock

    from mlffd.training import step as step_module
    from mlffd.training.config import TrainConfig
    from mlffd.training.trainer import Trainer

    def slow_first_call(fn, **kwargs):
        calls = []

        def call(*args):
            if not calls:
                clock.sleep(3.0)
            calls.append(1)
            return fn(*args)
        return call

    monkeypatch.setattr(step_module.torch, "compile", slow_first_call)
    data = str(write_dataset(tmp_path / "d.h5", n_frames=4))
    cfg = TrainConfig.from_dict({"preset": "tiny", "epochs": None, "time_budget_minutes": 0.03, "compile": True})
    summary = Trainer(data, str(tmp_path / "run"), cfg).run(quiet=True)
    assert summary["compile_s"] >= 3.0
    assert summary["epochs"] > 1 and 1.8 <= summary["elapsed_s"] < 3.0


def test_warm_starts_and_export_read_the_one_checkpoint_hand_off(tmp_path):
    """init_from and `mlffd export` read run folders, best.pt and the resumable checkpoint.pt through
    mlffd.training.checkpoint: a warm start begins from the run's EMA weights, and what is not a
    checkpoint, or another architecture, is refused in one line."""
    from mlffd.errors import MLFFDError
    from mlffd.export.freeze import export_checkpoint
    from mlffd.training.checkpoint import handoff, read_checkpoint
    from mlffd.training.config import TrainConfig
    from mlffd.training.trainer import Trainer

    data = str(write_dataset(tmp_path / "d.h5", n_frames=4))
    settings = {"preset": "tiny", "epochs": 2, "batch_size": 2, "dtype": "float64"}
    first = Trainer(data, str(tmp_path / "a"), TrainConfig.from_dict(settings))
    first.run(quiet=True)
    best = read_checkpoint(tmp_path / "a")
    state = read_checkpoint(tmp_path / "a" / "checkpoint.pt")  # the resumable state: its EMA weights
    assert set(handoff({}, {}, metrics={}, teacher={}, dataset_fingerprint="", train_config={},
                       training_temperatures_k=[])) <= set(best)
    for k, (source, payload) in enumerate(((tmp_path / "a", best), (tmp_path / "a" / "checkpoint.pt", state))):
        warm = Trainer(data, str(tmp_path / f"warm{k}"),
                       TrainConfig.from_dict({**settings, "init_from": str(source)}))
        for name, value in warm.model.state_dict().items():
            torch.testing.assert_close(value, payload["model"][name], rtol=0, atol=0)
    meta = export_checkpoint(tmp_path / "a" / "checkpoint.pt", tmp_path / "m.pt", use_ops=False)
    assert meta["elements"] == ["Cu"]

    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(MLFFDError, match="^init_from: .*other.pt is not an mlffd training checkpoint"):
        Trainer(data, str(tmp_path / "b"), TrainConfig.from_dict({**settings, "init_from": str(tmp_path / "other.pt")}))
    with pytest.raises(MLFFDError, match="differs in channels"):
        Trainer(data, str(tmp_path / "c"), TrainConfig.from_dict({**settings, "channels": 4,
                                                                   "init_from": str(tmp_path / "a")}))
