"""The student itself: symmetry, exact derivatives, and that it can learn."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlffd.model.student import StudentConfig, StudentPotential
from mlffd.neighbours import neighbour_graph
from mlffd.training.graphs import collate, frame_to_graph, predict
from mlffd.neighbours import NeighbourList
from mlffd.voigt import voigt


def make_model(num_interactions=2, lmax=2, seed=0, elements=("Si", "O"), products=None, pair_repulsion=False):
    torch.manual_seed(seed)
    config = StudentConfig(elements=list(elements), cutoff=4.0, num_interactions=num_interactions, channels=8,
                           lmax=lmax, products=products, pair_repulsion=pair_repulsion, radial_hidden=16, mlp_hidden=16, avg_num_neighbors=10.0,
                           atomic_energies=[-2.0, -3.0][: len(elements)], energy_scale=1.0)
    return StudentPotential(config).double()


def structure(seed=0):
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.1, seed=seed)
    atoms.numbers[[1, 6]] = 8
    return atoms


def evaluate(model, atoms):
    edge_index, edge_vec = neighbour_graph(atoms.positions, atoms.cell.array, atoms.pbc, model.cutoff)
    species = torch.tensor([0 if z == 14 else 1 for z in atoms.numbers])
    return model(torch.from_numpy(edge_vec), species, torch.from_numpy(edge_index), len(atoms))


@pytest.mark.parametrize("num_interactions, products", [(1, None), (2, None), (1, 24)])
def test_rotation_equivariance(num_interactions, products):
    model = make_model(num_interactions, products=products)
    atoms = structure()
    out = evaluate(model, atoms)
    rotation = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))[0].numpy()
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    rotated.cell = atoms.cell.array @ rotation.T
    out_rot = evaluate(model, rotated)
    assert abs(float(out["energy"] - out_rot["energy"])) < 1e-10 * max(1.0, abs(float(out["energy"])))
    np.testing.assert_allclose(out_rot["forces"].numpy(), out["forces"].numpy() @ rotation.T, atol=1e-10)
    np.testing.assert_allclose(out_rot["virial"].numpy(), rotation @ out["virial"].numpy() @ rotation.T, atol=1e-10)


def test_translation_invariance_and_zero_net_force():
    model = make_model()
    atoms = structure()
    out = evaluate(model, atoms)
    moved = atoms.copy()
    moved.positions += np.array([0.37, -1.2, 2.9])
    out_moved = evaluate(model, moved)
    assert abs(float(out["energy"] - out_moved["energy"])) < 1e-10
    np.testing.assert_allclose(out["forces"].sum(0).numpy(), 0.0, atol=1e-12)


# the ZBL wall on: a cell compressed to 0.75 (Si-Si 1.8 A, inside its 2.2 A covalent distance)
WALL = pytest.mark.parametrize("pair_repulsion", [False, True], ids=["no_wall", "zbl_wall"])


def wall_case(pair_repulsion: bool, seed: int):
    model = make_model(pair_repulsion=pair_repulsion)
    atoms = structure(seed)
    if pair_repulsion:
        atoms.set_cell(atoms.cell.array * 0.75, scale_atoms=True)
        wall = float(evaluate(model, atoms)["energy"] - evaluate(make_model(), atoms)["energy"])
        assert wall > 10.0  # the wall is in the numbers, not a rounding
    return model, atoms


def minus_energy_slope(model, atoms, h: float, move=None, strain=None) -> float:
    """-dE/ds by central difference along positions + s * `move` (an array like them) or the cell
    deformed by 1 + s * `strain` (3 x 3, atoms scaled with it)."""
    energies = []
    for step in (h, -h):
        moved = atoms.copy()
        if move is not None:
            moved.positions += step * move
        if strain is not None:
            moved.set_cell(atoms.cell.array @ (np.eye(3) + step * strain).T, scale_atoms=True)
        energies.append(float(evaluate(model, moved)["energy"]))
    return -(energies[0] - energies[1]) / (2 * h)


def unit(shape, index) -> np.ndarray:
    out = np.zeros(shape)
    out[index] = 1.0
    return out


@WALL
def test_forces_are_minus_finite_difference_gradient(pair_repulsion):
    model, atoms = wall_case(pair_repulsion, 1)
    forces = evaluate(model, atoms)["forces"].numpy()
    for atom, axis in [(0, 0), (1, 2), (5, 1)]:
        fd = minus_energy_slope(model, atoms, 1e-5, move=unit(forces.shape, (atom, axis)))
        assert fd == pytest.approx(forces[atom, axis], abs=1e-7 if pair_repulsion else 1e-8, rel=1e-6)


@WALL
def test_virial_is_strain_derivative(pair_repulsion):
    model, atoms = wall_case(pair_repulsion, 2)
    virial = evaluate(model, atoms)["virial"].numpy()
    for a, b in [(0, 0), (1, 2), (2, 1)]:
        # W_ab = -dE/d(eps_ab)
        fd = minus_energy_slope(model, atoms, 1e-6, strain=unit((3, 3), (a, b)))
        assert fd == pytest.approx(virial[a, b], abs=1e-7, rel=1e-6)


def test_per_atom_virial_is_in_the_one_voigt_order():
    """Each edge's virial is split between its two atoms in mlffd.voigt's (ASE's) order, so the
    per-atom virials sum to the virial as a Voigt vector (its off-diagonal terms all differ here)."""
    out = evaluate(make_model(), structure(4))
    virial = out["virial"].double().numpy()
    assert len({round(virial[a, b], 6) for a, b in [(1, 2), (0, 2), (0, 1)]}) == 3
    np.testing.assert_allclose(out["atom_virial"].double().sum(0).numpy(), voigt(virial), rtol=1e-10, atol=1e-12)


def test_pair_repulsion_is_zbl_inside_the_covalent_distance_and_nothing_beyond():
    """A Si dimer: the wall adds the ZBL energy times the envelope, falls monotonically as the pair
    opens, and adds exactly nothing from the covalent distance (2 x 1.11 A) on."""
    from ase import Atoms

    from mlffd.model.radial import envelope

    with_wall, without = make_model(elements=("Si",), pair_repulsion=True), make_model(elements=("Si",))
    added = []
    for d in (0.8, 1.2, 1.6, 2.0, 2.2):
        atoms = Atoms("Si2", positions=[[0, 0, 0], [d, 0, 0]], pbc=False)
        added.append(float(evaluate(with_wall, atoms)["energy"] - evaluate(without, atoms)["energy"]))
        r = torch.tensor([d], dtype=torch.float64)
        bare = with_wall.repulsion.pair_energy(r, torch.tensor([0]))  # Si-Si
        # rel 1e-5: the covalent radii are buffers of the default dtype (float32-rounded 1.11 A)
        assert added[-1] == pytest.approx(float(bare * envelope(r / 2.22)), rel=1e-5)
    assert all(a > b for a, b in zip(added, added[1:])) and added[0] > 100.0
    for d in (2.23, 3.0):
        atoms = Atoms("Si2", positions=[[0, 0, 0], [d, 0, 0]], pbc=False)
        assert float(evaluate(with_wall, atoms)["energy"]) == float(evaluate(without, atoms)["energy"])


def test_smooth_at_cutoff():
    """Two atoms straddling the cutoff: energy continuous, force goes to zero."""
    from ase import Atoms

    model = make_model(elements=("Si",))
    energies = []
    for d in (3.999999, 4.000001):
        atoms = Atoms("Si2", positions=[[0, 0, 0], [d, 0, 0]], pbc=False)
        energies.append(float(evaluate(model, atoms)["energy"]))
    assert abs(energies[0] - energies[1]) < 1e-9


def test_tiny_model_overfits_a_handful_of_frames():
    """Loss on 4 frames falls by 100x: the model, its gradients and the loss are wired right."""
    torch.manual_seed(0)
    reference = make_model(num_interactions=1, seed=7)  # a random "teacher" of the same family
    student = make_model(num_interactions=1, seed=1)
    neighbours = NeighbourList(4.0)
    graphs = []
    for seed in range(4):
        atoms = structure(seed + 10)
        out = evaluate(reference, atoms)
        frame = {"positions": atoms.positions, "numbers": atoms.numbers, "cell": atoms.cell.array,
                 "pbc": atoms.pbc, "energy": float(out["energy"]), "forces": out["forces"].numpy(), "stress": None}
        graphs.append(frame_to_graph(frame, {14: 0, 8: 1}, neighbours))
    batch = collate(graphs, torch.float64)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)

    def loss():
        pred = predict(student, batch, create_graph=True)
        return torch.mean((pred["forces"] - batch["forces"]) ** 2) + torch.mean(((pred["energy"] - batch["energy"]) / 8) ** 2)

    first = float(loss().detach())
    for _ in range(400):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    assert float(loss().detach()) < first / 100


@pytest.mark.parametrize("use_ops", [False, True])
def test_training_predictions_equal_the_frozen_model(tmp_path, use_ops):
    """One forward: what training fits (graphs.predict on a batch of frames) is what the frozen file
    returns to ASE for each frame, energy, forces and stress, with and without the custom ops."""
    from mlffd import MLFFDCalculator
    from mlffd.export.freeze import freeze

    model = make_model(num_interactions=2, seed=3)
    path = tmp_path / "m.pt"
    freeze(make_model(num_interactions=2, seed=3), path, use_ops=use_ops)
    frames, graphs = [], []
    for seed in range(3):
        atoms = structure(seed)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * seed * np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])),
                       scale_atoms=True)
        frame = {"positions": atoms.positions, "numbers": atoms.numbers, "cell": atoms.cell.array, "pbc": atoms.pbc,
                 "energy": 0.0, "forces": np.zeros((len(atoms), 3)), "stress": np.zeros(6)}
        frames.append(atoms)
        graphs.append(frame_to_graph(frame, {14: 0, 8: 1}, NeighbourList(model.cutoff)))
    pred = predict(model, collate(graphs, torch.float64), create_graph=False)
    forces = pred["forces"].detach().numpy().reshape(len(frames), -1, 3)
    for k, atoms in enumerate(frames):
        atoms.calc = MLFFDCalculator(str(path))
        assert float(pred["energy"][k]) == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(forces[k], atoms.get_forces(), atol=1e-10)
        virial = pred["virial"][k].detach().numpy()
        stress = -virial / atoms.get_volume()
        np.testing.assert_allclose(stress.flat[[0, 4, 8, 5, 2, 1]], atoms.get_stress(), atol=1e-10)
        assert np.abs(atoms.get_stress()[3:]).max() > 1e-6  # sheared: off-diagonal stress to compare
