"""Does a per-atom descriptor distance rank a lab student's real force errors? (issue 31, first measurement)

    python benchmarks/fidelity/uncertainty.py si default --dir lab/si      # the lab row's kept model.pt

For the student a lab recipe trained (runs/RECIPE-s0/model.pt, its training frames re-selected from
the pool), per atom: the Mahalanobis distance of its descriptor to the training atoms' (mean and
covariance of the training atoms; two descriptors: `phi`, the hidden layer of the last update MLP,
whose linear readout is the atom's energy, and `x`, the invariants that MLP reads) and the distance
to the nearest of 8,000 training atoms (kNN); against |F_student - F_teacher| per atom, and per frame
the largest distance against the frame's force RMSE. Spearman rank correlations, per frame set; the
surface set (no sampler makes surfaces: none in any recipe's data) is labelled here by the teacher:
(100) and (111) slabs of the teacher's relaxed crystal, 10 A of vacuum, rattled by 0.05 A.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.stats import spearmanr

import lab
from mlffd.data.dataset import open_dataset
from mlffd.export.contract import read_metadata
from mlffd.export.ops import load_library
from mlffd.model.registry import build_model
from mlffd.training.graphs import build_graphs, collate, predict


def student(model_path: Path):
    """The frozen student's weights in the training-time module, with hooks on the descriptors."""
    load_library()
    meta = read_metadata(model_path)
    model = build_model(meta["model_config"]).double()
    frozen = torch.jit.load(str(model_path)).state_dict()
    model.load_state_dict({k: v for k, v in frozen.items() if k in model.state_dict()})
    features: dict = {}
    last = model.interactions[-1]
    last.update[1].register_forward_hook(lambda m, i, o: features.__setitem__("phi", o.detach()))
    last.update[0].register_forward_pre_hook(lambda m, i: features.__setitem__("x", i[0].detach()))
    return model, meta, features


def per_atom(model, meta, features, frames) -> list[dict]:
    out = []
    for frame in frames:
        graph = collate(build_graphs([frame], meta["elements"], meta["cutoff"]), torch.float64)
        pred = predict(model, graph, create_graph=False)
        out.append({"err": (pred["forces"].detach() - graph["forces"]).norm(dim=1).numpy(),
                    "phi": features["phi"].numpy().copy(), "x": features["x"].numpy().copy()})
    return out


def mahalanobis(train: list[dict], key: str):
    x = np.concatenate([t[key] for t in train])
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False)
    precision = np.linalg.inv(cov + 1e-6 * np.trace(cov) / len(cov) * np.eye(len(cov)))
    return lambda z: np.einsum("ij,jk,ik->i", z - mean, precision, z - mean)


def surface_frames(teacher_name: str, structure: str, n: int = 12) -> list[dict]:
    """Rattled (100) and (111) slabs of the teacher's relaxed crystal, labelled by the teacher."""
    from ase.build import bulk, surface

    from mlffd.relax import relax
    from mlffd.teachers.registry import load_teacher

    if structure != "si":
        raise SystemExit("the surface set is built for diamond Si only")
    teacher = load_teacher(teacher_name)
    unit = relax(bulk("Si", "diamond", a=5.431, cubic=True), teacher, fmax=1e-3, cell="hydrostatic").atoms
    rng = np.random.default_rng(0)
    frames = []
    for k in range(n):
        miller = (1, 0, 0) if k % 2 == 0 else (1, 1, 1)
        slab = surface(unit, miller, 2, vacuum=5.0, periodic=True).repeat((2, 2, 1))  # 64 atoms
        slab.positions += rng.normal(0.0, 0.05, slab.positions.shape)
        slab.calc = teacher
        frames.append({"numbers": slab.numbers, "positions": slab.positions, "cell": slab.cell.array,
                       "pbc": slab.pbc, "energy": slab.get_potential_energy(), "forces": slab.get_forces(),
                       "stress": None, "atom_energies": None, "sampler": "surface"})
    return frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("system")
    p.add_argument("recipe")
    p.add_argument("--dir", type=Path, required=True, help="the lab folder (pool.h5, test.h5, runs/)")
    args = p.parse_args()
    recipes = yaml.safe_load(lab.RECIPES.read_text())[args.system]
    model, meta, features = student(args.dir / "runs" / f"{args.recipe}-s0" / "model.pt")
    pool = open_dataset(args.dir / "pool.h5")
    train_idx = set(lab.select_frames(pool, recipes["recipes"][args.recipe]["frames"], recipes["structure"]))
    train = per_atom(model, meta, features, [pool.frame(i) for i in sorted(train_idx)])
    distance = {k: mahalanobis(train, k) for k in ("phi", "x")}
    rng = np.random.default_rng(0)
    reference = {k: np.concatenate([t[k] for t in train]) for k in ("phi", "x")}
    reference = {k: v[rng.choice(len(v), min(8000, len(v)), replace=False)] for k, v in reference.items()}

    def nearest(key, z):
        return np.sqrt(((z[:, None, :] - reference[key][None]) ** 2).sum(-1).min(1))

    keys = pool.keys()
    kinds = [(pool.frame(i)["sampler"], pool.frame(i)["temperature"]) for i in range(len(pool))]
    prefix = recipes["structure"] + "/"

    def unseen(sampler, temperatures=None):
        return [pool.frame(i) for i, (s, t) in enumerate(kinds) if s == sampler and i not in train_idx
                and (temperatures is None or t in temperatures) and keys[i].startswith(prefix)]

    test = open_dataset(args.dir / "test.h5")
    sets = {"held-out 1200 K": [test.frame(i) for i in range(len(test))],
            "teacher MD 2000-2500 K": unseen("md", {2000.0, 2500.0}),
            "vacancy": unseen("vacancy"),
            "near equilibrium 30-100 K": unseen("rattle", {30.0, 100.0}),
            "surface (100), (111) slabs": surface_frames(pool.metadata["teacher_name"], recipes["structure"])}
    print(f"{args.system} {args.recipe} seed 0: {sum(len(t['err']) for t in train)} training atoms\n")
    print("| frames | n | mean abs force error eV/A | median d(phi) | per atom: Mahalanobis phi / x, kNN phi / x "
          "| per frame (largest d vs force RMSE): Mahalanobis phi / x |")
    print("|---|---|---|---|---|---|")
    every = []
    for name, frames in sets.items():
        if not frames:
            continue
        res = per_atom(model, meta, features, frames)
        err = np.concatenate([r["err"] for r in res])
        atom = [spearmanr(np.concatenate([distance[k](r[k]) for r in res]), err)[0] for k in ("phi", "x")]
        atom += [spearmanr(np.concatenate([nearest(k, r[k]) for r in res]), err)[0] for k in ("phi", "x")]
        rmse = [float(np.sqrt(np.mean(r["err"] ** 2))) for r in res]
        frame = [spearmanr([distance[k](r[k]).max() for r in res], rmse)[0] for k in ("phi", "x")]
        every += [(e, distance["phi"](r["phi"]).max()) for e, r in zip(rmse, res)]
        median = np.median(np.concatenate([distance["phi"](r["phi"]) for r in res]))
        print(f"| {name} | {len(frames)} | {err.mean():.3f} | {median:.1f} | " + " / ".join(f"{v:.2f}" for v in atom)
              + " | " + " / ".join(f"{v:.2f}" for v in frame) + " |")
    e = np.array(every)
    print(f"\nevery frame above together, per frame, Mahalanobis phi: {spearmanr(e[:, 1], e[:, 0])[0]:.2f}")


if __name__ == "__main__":
    main()
