"""Benchmark the fused custom ops against the pure-PyTorch reference (not a test).

    python benchmarks/bench_ops.py [--threads 2] [--edges 15000] [--channels 16] [--repeats 30] [--model]
                                   [--clock wall|cpu] [--stat min|median]

Times (min, or median, over repeats; milliseconds):
  * conv_scatter_h forward, and forward + backward (grads of radial, h and sh), fused vs reference
    (mlffd.model.kernels.conv_scatter_h), lmax 1 and 2, float32 and float64;
  * the radial part (Bessel basis x polynomial envelope, forward + backward) for scale;
  * with --model: a whole student (energy + forces, eager), reference vs fused (export/fused.py).
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from mlffd.export import ops
from mlffd.model import kernels as reference


CLOCK = time.perf_counter  # --clock cpu: time.process_time (CPU seconds of all threads; robust to load)
REDUCE = min  # --stat median


def timeit(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = CLOCK()
        fn()
        times.append(CLOCK() - t)
    return REDUCE(times) * 1e3


def random_graph(n_edges: int, n_nodes: int, generator: torch.Generator) -> torch.Tensor:
    centre, _ = torch.sort(torch.randint(0, n_nodes, (n_edges,), generator=generator))
    return centre


def bench_conv(args, lmax: int, dtype: torch.dtype) -> dict:
    g = torch.Generator().manual_seed(lmax)
    n_edges, n_nodes, c = args.edges, args.edges // args.neighbours, args.channels
    centre = random_graph(n_edges, n_nodes, g)
    neighbour = torch.randint(0, n_nodes, (n_edges,), generator=g)
    radial = torch.randn(n_edges, lmax + 1, c, generator=g).to(dtype).requires_grad_(True)
    h = torch.randn(n_nodes, c, generator=g).to(dtype).requires_grad_(True)
    sh = torch.randn(n_edges, (lmax + 1) ** 2, generator=g).to(dtype).requires_grad_(True)
    gout = torch.randn(n_nodes, c, (lmax + 1) ** 2, generator=g).to(dtype)
    fused = torch.ops.mlffd.conv_scatter_h
    ref = reference.conv_scatter_h
    row = {"lmax": lmax, "dtype": str(dtype).replace("torch.", "")}
    for name, f in (("ref", ref), ("fused", fused)):
        def fwd():
            with torch.no_grad():
                f(radial, h, sh, centre, neighbour, lmax)

        def fwd_bwd():
            out = f(radial, h, sh, centre, neighbour, lmax)
            torch.autograd.grad(out, [radial, h, sh], gout)

        row[f"{name}_fwd"] = timeit(fwd, args.repeats)
        row[f"{name}_fwdbwd"] = timeit(fwd_bwd, args.repeats)
    return row


def bench_radial(args, dtype: torch.dtype, n_basis: int = 8, p: int = 6, cutoff: float = 5.0) -> float:
    from mlffd.model.radial import BesselBasis, PolynomialCutoff

    r = (torch.rand(args.edges, dtype=dtype) * (cutoff - 0.5) + 0.5).requires_grad_(True)
    basis, envelope = BesselBasis(cutoff, n_basis).to(dtype), PolynomialCutoff(cutoff, p)

    def fwd_bwd():
        out = basis(r) * envelope(r).unsqueeze(-1)
        torch.autograd.grad(out.sum(), [r])

    return timeit(fwd_bwd, args.repeats)


def bench_model(args, lmax: int, dtype: torch.dtype) -> tuple[float, float, float, int]:
    from mlffd.model.student import StudentConfig, StudentPotential
    from mlffd.export.fused import use_fused_ops

    torch.manual_seed(0)
    n_atoms, cutoff = args.edges // args.neighbours, 5.0
    box = (n_atoms * 4.0 / 3.0 * math.pi * cutoff**3 / args.neighbours) ** (1.0 / 3.0)
    pos = torch.rand(n_atoms, 3, dtype=torch.float64) * box
    d = pos.unsqueeze(0) - pos.unsqueeze(1)  # d[i, j] = pos[j] - pos[i]
    shift_ij = -box * torch.round(d / box)
    dist = (d + shift_ij).norm(dim=-1)
    mask = (dist < cutoff) & ~torch.eye(n_atoms, dtype=torch.bool)
    i, j = mask.nonzero(as_tuple=True)  # row-major: sorted by centre
    edge_index = torch.stack([i, j])
    edge_vec = pos[j] - pos[i] + shift_ij[i, j]  # float64, the artifact's input
    species = torch.zeros(n_atoms, dtype=torch.long)
    config = StudentConfig(elements=["Si"], cutoff=cutoff, num_interactions=2, channels=args.channels, lmax=lmax,
                           avg_num_neighbors=float(args.neighbours))
    model = StudentPotential(config).to(dtype)
    t_ref = timeit(lambda: model(edge_vec, species, edge_index, n_atoms), max(5, args.repeats // 3))
    out_ref = model(edge_vec, species, edge_index, n_atoms)
    for parameter in model.parameters():  # the fused ops differentiate w.r.t. the edges only
        parameter.requires_grad_(False)
    use_fused_ops(model)
    t_fused = timeit(lambda: model(edge_vec, species, edge_index, n_atoms), max(5, args.repeats // 3))
    out_fused = model(edge_vec, species, edge_index, n_atoms)
    diff = (out_ref["forces"] - out_fused["forces"]).abs().max().item()
    return t_ref, t_fused, diff, edge_index.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--edges", type=int, default=15000)
    parser.add_argument("--neighbours", type=int, default=30, help="edges per atom (n_nodes = edges / this)")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--model", action="store_true", help="also time a whole student, reference vs fused")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: perf_counter; cpu: process_time (sum over threads; use on a loaded machine)")
    parser.add_argument("--stat", choices=("min", "median"), default="min")
    args = parser.parse_args()
    global CLOCK, REDUCE
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    REDUCE = min if args.stat == "min" else statistics.median
    torch.set_num_threads(args.threads)
    print(f"# library: {ops.load_library()} ({torch.ops.mlffd.build_info()})")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, E={args.edges}, "
          f"N={args.edges // args.neighbours}, C={args.channels}; {args.stat} of {args.repeats}, {args.clock} clock, ms\n")
    print("| lmax | dtype | fwd ref | fwd fused | speed-up | fwd+bwd ref | fwd+bwd fused | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype in (torch.float32, torch.float64):
        for lmax in (1, 2):
            r = bench_conv(args, lmax, dtype)
            print(f"| {lmax} | {r['dtype']} | {r['ref_fwd']:.3f} | {r['fused_fwd']:.3f} | "
                  f"{r['ref_fwd'] / r['fused_fwd']:.1f}x | {r['ref_fwdbwd']:.3f} | {r['fused_fwdbwd']:.3f} | "
                  f"{r['ref_fwdbwd'] / r['fused_fwdbwd']:.1f}x |")
    print()
    for dtype in (torch.float32, torch.float64):
        print(f"radial basis x envelope (reference), fwd+bwd, {str(dtype).replace('torch.', '')}: "
              f"{bench_radial(args, dtype):.3f} ms")
    if args.model:
        print("\n| model (2 layers, eager) | dtype | edges | energy+forces ref | fused | speed-up | max |dF| |")
        print("|---|---|---|---|---|---|---|")
        for dtype in (torch.float32, torch.float64):
            for lmax in (1, 2):
                t_ref, t_fused, diff, n_edges = bench_model(args, lmax, dtype)
                print(f"| C={args.channels}, lmax {lmax} | {str(dtype).replace('torch.', '')} | {n_edges} | "
                      f"{t_ref:.2f} | {t_fused:.2f} | {t_ref / t_fused:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
