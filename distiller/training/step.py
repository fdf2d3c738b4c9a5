"""Training's loss and one step's weight gradient: eagerly, or as one compiled graph (issue 29).

Eager: `predict` with create_graph (the force terms need the second derivative; autograd's double
backward), then `loss.backward()`: a few hundred small elementwise ops over [edges, ...] tensors per
step, bound by memory traffic. Compiled: the same loss as a pure function of the weights
(`predict_functional`, `torch.func.grad_and_value` over them), traced once by `torch.compile` into
fused loops: the same numbers at 1.7-2.6x the epochs per minute on CPU (benchmarks/NOTES.md, issue 29).
Compiling costs 1-4 minutes once per process (inductor keeps the kernels in its on-disk cache),
so `mlffd train` compiles when the rest of its schedule is long enough to repay it (TrainConfig.compile).
"""

from __future__ import annotations

import time
import warnings
from typing import Dict

import torch

from mlffd.data.sampling import PAIR_STEP
from mlffd.errors import MLFFDError
from mlffd.training.config import TrainConfig
from mlffd.training.graphs import AtomEnergies, Graph, predict, predict_functional

# Seconds of uncompiled training left below which compiling is not worth it (TrainConfig.compile
# null): the first compile of `fast` or `small` took 62-89 s on 2 cores, after which an epoch costs
# 0.4-0.5x, so it pays from ~150 s left; 300 keeps a margin (`medium`, 230 s at 0.6x, pays from ~560 s).
COMPILE_PAYBACK_S = 300.0


def loss_fn(pred: Dict[str, torch.Tensor], batch: Graph, cfg: TrainConfig) -> torch.Tensor:
    """Weighted mean squared errors; every term of a frame is scaled by its frame weight (its sampler's).
    Terms over a subset (frames with a stress, atoms with a teacher energy) are masked sums over the
    subset's size, with no branch on the data: the same formula runs eagerly and compiled."""
    dtype = pred["energy"].dtype
    n_atoms = batch["n_atoms"].to(dtype)
    frame_w = batch["frame_weight"]
    atom_w = frame_w.index_select(0, batch["batch"])
    energy_loss = torch.mean(frame_w * ((pred["energy"] - batch["energy"]) / n_atoms) ** 2)
    force_w = (frame_w * batch["force_weight"]).index_select(0, batch["batch"])
    force_loss = torch.mean(force_w.unsqueeze(1) * (pred["forces"] - batch["forces"]) ** 2)
    loss = cfg.energy_weight * energy_loss + cfg.force_weight * force_loss
    if cfg.stress_weight > 0:
        stressed = batch["has_stress"].to(dtype)
        diff = (pred["virial"] - batch["virial"]) / n_atoms.view(-1, 1, 1)
        stress_w = frame_w * batch["stress_weight"] * stressed
        stress_loss = torch.sum(stress_w.view(-1, 1, 1) * diff**2) / (9.0 * stressed.sum()).clamp(min=1.0)
        loss = loss + cfg.stress_weight * stress_loss
    if cfg.atom_energy_weight > 0:
        labelled = batch["has_atom_energy"].to(dtype)  # the others' targets are NaN
        diff = pred["atom_energy"] - torch.nan_to_num(batch["atom_energy"])
        loss = loss + cfg.atom_energy_weight * torch.sum(labelled * atom_w * diff**2) / labelled.sum().clamp(min=1.0)
    if cfg.hessian_weight > 0 and "pair_a" in batch:
        a, b = batch["pair_a"], batch["pair_b"]
        dd = (pred["forces"][b] - pred["forces"][a]) - (batch["forces"][b] - batch["forces"][a])
        loss = loss + cfg.hessian_weight * torch.mean(atom_w[a].unsqueeze(1) * (dd / PAIR_STEP) ** 2)
    return loss


class GradientStep:
    """`step(batch)`: the batch's loss, with the gradient of the model's weights left in their `.grad`
    (what `loss.backward()` leaves). Eager until `compile()`."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig):
        self.model = model
        self.cfg = cfg
        self.energies = AtomEnergies(model)
        self.compiled = None
        self.must_compile = False
        self.attempted = False  # compile() was called (a failed compile is not tried again)
        self.traced = False
        # Seconds of the first compiled call: dynamo's trace and inductor's build, 15 s to 4 minutes by
        # preset and by what inductor's on-disk cache holds. Not training: a time budget leaves it out.
        self.compile_s = 0.0

    def compile(self, must: bool) -> None:
        """Trace the step at its next call (dynamic shapes: one graph for batches of any size). If that
        fails, `must`: an error; otherwise a warning, and the step stays eager. Once per step."""
        if self.compiled is not None:
            return
        self.must_compile = must
        self.attempted = True
        buffers = {f"model.{name}": b for name, b in self.model.named_buffers()}

        def loss_of(weights: Dict[str, torch.Tensor], batch: Graph, neighbours_per_atom: int) -> torch.Tensor:
            pred = predict_functional(self.energies, {**weights, **buffers}, batch, neighbours_per_atom)
            return loss_fn(pred, batch, self.cfg)

        self.compiled = torch.compile(torch.func.grad_and_value(loss_of), dynamic=True)

    def compile_if_worth_it(self, remaining_s: float) -> None:
        """compile(must=False), once, when more than COMPILE_PAYBACK_S of uncompiled training is left."""
        if not self.attempted and remaining_s > COMPILE_PAYBACK_S:
            self.compile(must=False)

    def __call__(self, batch: Graph) -> torch.Tensor:
        if self.compiled is not None:
            weights = {f"model.{name}": p.detach() for name, p in self.model.named_parameters()}
            k = int(batch["neighbours_per_atom"]) if "neighbours_per_atom" in batch else 0
            start = time.perf_counter()
            try:
                gradient, loss = self.compiled(weights, batch, k)
            except Exception as exc:  # a machine that cannot compile (no C++ compiler), an unsupported op
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                message = f"torch.compile could not compile the training step ({type(exc).__name__}: {first})"
                if self.must_compile:
                    raise MLFFDError(f"{message}; set compile: false to train uncompiled") from exc
                warnings.warn(f"{message}; training goes on uncompiled", stacklevel=2)
                self.compiled = None
            else:
                for name, p in self.model.named_parameters():
                    p.grad = gradient[f"model.{name}"]
                return loss.detach()
            finally:
                if not self.traced:
                    self.traced = True
                    self.compile_s += time.perf_counter() - start
        loss = loss_fn(predict(self.model, batch, create_graph=True), batch, self.cfg)
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach()
