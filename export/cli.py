"""`mlffd export RUN_DIR|CHECKPOINT -o model.pt [--dtype float32|float64] [--device cpu|cuda] [--no-ops]
[--no-uncertainty]`."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="freeze a trained student to one deployable TorchScript .pt")
    p.add_argument("source", help="run folder of `mlffd train` (uses best.pt) or a checkpoint file")
    p.add_argument("-o", "--out", help="the model file (default model.pt; without -o an existing model.pt of "
                                      "another run is not replaced)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the device the frozen graph is saved on)")
    p.add_argument("--no-ops", action="store_true", help="keep the pure-PyTorch reference kernels")
    p.add_argument("--no-uncertainty", action="store_true",
                   help="leave the per-atom uncertainty out of the model (its few %% of each step saved)")
    p.set_defaults(func=run)
    ops = subparsers.add_parser("ops", help="the custom op library (C++ kernels of the frozen graph)")
    ops.add_argument("action", choices=["build", "path", "check-cuda"],
                     help="build: compile now (else on first use); path: where the library is; check-cuda: "
                          "compile the CUDA kernels with nvcc (no GPU or CUDA torch needed)")
    ops.add_argument("--arch", default="sm_90", help="check-cuda: GPU architecture (nvcc -arch)")
    ops.set_defaults(func=run_ops)


def run(args) -> int:
    from mlffd.export.freeze import export_checkpoint

    out = args.out or "model.pt"
    meta = export_checkpoint(args.source, out, args.dtype, args.device, use_ops=not args.no_ops,
                             replace_other_run=args.out is not None, with_uncertainty=not args.no_uncertainty)
    ops = ", ".join(meta["ops"]) or "none (reference kernels)"
    print(f"wrote {out}: elements {' '.join(meta['elements'])}, cutoff {meta['cutoff']} A, "
          f"{meta['num_interactions']} interaction(s), {meta['dtype']}, {meta['n_parameters']} parameters, custom ops: {ops}")
    return 0


def run_ops(args) -> int:
    from mlffd.export import ops

    if args.action == "check-cuda":
        from mlffd.export.ops import cuda_check

        return cuda_check.main(["--arch", args.arch])
    path = ops.load_library() if args.action == "build" else ops.library_path()
    print(path)
    return 0
