"""Where a training step's time goes (issue 29; numbers in benchmarks/NOTES.md).

    python benchmarks/training_cost.py batch DATA.h5      # ms per frame against batch size
    python benchmarks/training_cost.py threads DATA.h5    # ms per frame with 1 and 2 threads
    python benchmarks/training_cost.py dense-basis        # the atomic basis: index_add of [E, C, M]
                                                          # messages against a dense neighbour layout

A step is the loss, its gradient and the AdamW update of `mlffd train` (the distill recipe's loss
settings) on the first frames of DATA (e.g. a distill run's data/train.h5). Two rounds each: this
machine's speed drifts, so read the ratios within a round.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from mlffd.model import kernels
from mlffd.training.config import TrainConfig
from mlffd.training.graphs import predict
from mlffd.training.trainer import Trainer, loss_fn

LOSS = {"relative_force_floor": 0.2, "stress_weight": 10.0, "energy_weight": 300.0}


def ms_per_frame(data: str, frames: int, **settings) -> float:
    config = TrainConfig.from_dict({"epochs": 1, **LOSS, **settings})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(data, tmp, config)
        batches = trainer._batches(trainer.train_graphs[:frames], shuffle=False)

        def step(batch):
            loss = loss_fn(predict(trainer.model, batch, create_graph=True), batch, config)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimizer.step()

        step(batches[0])
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        return (time.perf_counter() - start) / frames * 1e3


def dense_basis(n_atoms: int = 256, neighbours: int = 32, channels: int = 16, lmax: int = 2) -> dict:
    """ms for the atomic basis, the forces through it and the loss's gradient, both layouts."""
    from e3nn import o3

    torch.manual_seed(0)
    n_edges = n_atoms * neighbours
    centre = torch.arange(n_atoms).repeat_interleave(neighbours)
    vec = torch.randn(n_edges, 3)
    harmonics = o3.SphericalHarmonics(list(range(lmax + 1)), True, "component")
    weight = torch.randn(8, (lmax + 1) * channels, requires_grad=True)

    def radial(v):
        return torch.sin(torch.linalg.vector_norm(v, dim=1, keepdim=True) * torch.arange(1, 9)) @ weight

    def messages(v):
        return kernels.conv_scatter(radial(v).view(n_edges, lmax + 1, channels), harmonics(v), centre, n_atoms, lmax)

    def dense(v):
        w = radial(v).view(n_atoms, neighbours, lmax + 1, channels)
        sh = harmonics(v).view(n_atoms, neighbours, -1)
        return torch.cat([torch.bmm(w[:, :, l].transpose(1, 2), sh[:, :, l * l:(l + 1) ** 2])
                          for l in range(lmax + 1)], dim=2)

    def step(basis_of):
        v = vec.clone().requires_grad_(True)
        basis = basis_of(v)
        forces = torch.autograd.grad((basis ** 2).sum(), v, create_graph=True)[0]
        return basis, torch.autograd.grad((forces ** 2).sum(), weight)[0]

    (a, grad_a), (b, grad_b) = step(messages), step(dense)
    out = {"basis_max_diff": float((a - b).abs().max()),
           "gradient_rel_diff": float((grad_a - grad_b).norm() / grad_a.norm())}
    for name, fn in (("index_add", messages), ("dense_bmm", dense)):
        for _ in range(3):
            step(fn)
        start = time.perf_counter()
        for _ in range(20):
            step(fn)
        out[f"{name}_ms"] = (time.perf_counter() - start) / 20 * 1e3
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["batch", "threads", "dense-basis"])
    p.add_argument("data", nargs="?", help="an mlffd dataset (batch, threads)")
    p.add_argument("--frames", type=int, default=192)
    args = p.parse_args()
    if args.what != "dense-basis" and not args.data:
        p.error(f"{args.what} needs a dataset")
    for round_ in range(2):
        if args.what == "batch":
            for size in (2, 4, 8, 16, 32):
                print(f"round {round_} batch {size}: {ms_per_frame(args.data, args.frames, batch_size=size):.2f} ms per frame")
        elif args.what == "threads":
            for threads in (1, 2):
                print(f"round {round_} threads {threads}: {ms_per_frame(args.data, args.frames, threads=threads):.2f} ms per frame")
        else:
            print(f"round {round_}: " + ", ".join(f"{k} {v:.3g}" for k, v in dense_basis().items()))


if __name__ == "__main__":
    main()
