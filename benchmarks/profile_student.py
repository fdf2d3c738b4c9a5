"""Cost per MD step of the exported student, and where it goes (not a test).

    python benchmarks/profile_student.py [--preset fast|small|small-l1] [--dtype float32|float64]
        [--threads 1] [--repeats 30] [--variants reference,conv,fused] [--profile] [--executor default|legacy]
        [--freeze]

System: Si diamond 4x4x4 cubic (512 atoms), positions jittered by 0.05 A, cutoff 5 A (14,336 edges).
Variants (same random weights, seed 0):
  reference  use_ops=False: the training-time graph (pure PyTorch + e3nn), scripted
  conv       the training graph with only its convolution swapped for mlffd::conv_scatter_h (radial network
             and e3nn spherical harmonics in TorchScript; close to the export before radial tables)
  fused      the current export (mlffd.export.fused.use_fused_ops): radial tables, spline_conv, interaction_node,
             edge_graph, edge_forces_virial
Times are CPU seconds of the process (time.process_time; robust on a shared machine), minimum and
median over repeats, for the raw `model(edge_vec, species, edge_index, n_local)` call and for
`MLFFDCalculator.calculate(atoms, ["energy", "forces", "stress"])` (adds vesin and Python glue).
--profile prints torch.profiler's self-CPU table (wall clock: inflated under load) per variant.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from e3nn.util.jit import compile as e3nn_compile

from mlffd.calculator import MLFFDCalculator
from mlffd.model.student import StudentConfig, StudentPotential
from mlffd.export.freeze import freeze

PRESETS = {"fast": (1, 16, 2), "small": (2, 16, 2), "small-l1": (2, 16, 1)}


class ConvOnlyScatter(torch.nn.Module):
    """Only the convolution fused (for comparison): mlffd::conv_scatter_h on the network's radial and e3nn's sh."""

    def __init__(self, lmax: int):
        super().__init__()
        self.lmax = lmax

    def forward(self, radial: torch.Tensor, h: torch.Tensor, sh: torch.Tensor, centre: torch.Tensor,
                neighbour: torch.Tensor) -> torch.Tensor:
        return torch.ops.mlffd.conv_scatter_h(radial, h, sh, centre, neighbour, self.lmax)


def make_model(path: Path, preset: str, dtype: str, variant: str) -> Path:
    t, c, lmax = PRESETS[preset]
    torch.manual_seed(0)
    config = StudentConfig(elements=["Si"], cutoff=5.0, num_interactions=t, channels=c, lmax=lmax,
                           radial_hidden=16, mlp_hidden=16, avg_num_neighbors=10.0, atomic_energies=[-1.0],
                           energy_scale=0.5)  # as mlffd.export.testing.make_demo_model
    model = StudentPotential(config)
    if variant != "conv":
        freeze(model, path, dtype=dtype, use_ops=variant == "fused")
        return path
    freeze(model, path, dtype=dtype, use_ops=True)  # metadata + library; then overwrite the graph
    from mlffd.export.contract import METADATA_JSON, METADATA_TXT

    extra = {METADATA_JSON: "", METADATA_TXT: ""}
    torch.jit.load(str(path), _extra_files=extra)
    model = StudentPotential(config).to(torch.float64 if dtype == "float64" else torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    for interaction in model.interactions:
        interaction.conv = ConvOnlyScatter(interaction.lmax)
    torch.jit.save(e3nn_compile(model), str(path), _extra_files=extra)
    return path


def cpu_times(fn, repeats: int, warmup: int = 5) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times) * 1e3, statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--variants", default="reference,conv,fused")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--executor", default="default", choices=["default", "legacy"])
    ap.add_argument("--freeze", action="store_true", help="torch.jit.freeze the loaded model (checks grads work)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.executor == "legacy":
        torch._C._jit_set_profiling_executor(False)
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((4, 4, 4))
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.05, atoms.positions.shape)
    tmp = Path(tempfile.mkdtemp())
    n = len(atoms)
    print(f"# {args.preset} {args.dtype} threads={args.threads} executor={args.executor} freeze={args.freeze} "
          f"N={n}")
    print("| variant | model min ms | model median ms | calc min ms | calc median ms | model us/atom | calc us/atom |")
    print("|---|---|---|---|---|---|---|")
    for variant in args.variants.split(","):
        path = make_model(tmp / f"{variant}.pt", args.preset, args.dtype, variant)
        calc = MLFFDCalculator(str(path))
        if args.freeze:
            calc.model = torch.jit.freeze(calc.model)
        edge_index, edge_vec = calc._neighbours.edges(atoms.positions, atoms.cell.array, atoms.pbc)
        model_args = (torch.from_numpy(edge_vec.copy()), calc._species_tensor(atoms.numbers),
                      torch.from_numpy(edge_index), n)
        m_min, m_med = cpu_times(lambda: calc.model(*model_args), args.repeats)
        c_min, c_med = cpu_times(lambda: calc.calculate(atoms, ["energy", "forces", "stress"]), args.repeats)
        print(f"| {variant} | {m_min:.2f} | {m_med:.2f} | {c_min:.2f} | {c_med:.2f} | {m_min / n * 1e3:.1f} | "
              f"{c_min / n * 1e3:.1f} |")
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                for _ in range(10):
                    calc.model(*model_args)
            events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in events)
            print(f"  profile ({variant}): self CPU per call {total / 1e4:.2f} ms (profiler, wall clock)")
            for e in events[:25]:
                print(f"  {e.self_cpu_time_total / 1e4:7.3f} ms {100 * e.self_cpu_time_total / total:5.1f}% "
                      f"{e.count // 10:3d}x {e.key[:45]:45s} {str(e.input_shapes)[:90]}")


if __name__ == "__main__":
    main()
