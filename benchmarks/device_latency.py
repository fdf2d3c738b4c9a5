"""Per-call latency of the frozen student on one device, custom ops vs reference kernels, in one run.

    python benchmarks/device_latency.py [--device cpu|cuda] [--sizes 64,512,4096] [--dtypes float32,float64]
                                        [--threads N] [--calls 20] [--warmup 5] [--source RUN_OR_CHECKPOINT]
                                        [--preset fast] [--out benchmarks/results/device_latency_<device>]

One "call" is what an MD step asks of the model: energy + forces + virial, called exactly as
distiller/calculator.py calls the frozen model, on a graph built once per size (the timing is the
model call at a fixed graph; neighbour search and host<->device copies are not included).
The student is frozen twice per dtype with mlffd.export.freeze (use_ops=True: the mlffd custom ops;
use_ops=False: the pure-PyTorch reference kernels) and loaded with mlffd.export.load.load_frozen.
Systems are rattled Si diamond supercells (8 n^3 atoms). By default the student has random weights
of a training preset: latency does not depend on the weights. --source times a trained checkpoint.

Needs torch, e3nn and numpy only (no ase, no vesin): the neighbour list is a chunked minimum-image
search in torch. Writes <out>.json and <out>.md; exits 1 if any variant failed (its error is in the
table), 2 on a setup problem (no CUDA, custom ops not loadable, box too small).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlffd.errors import MLFFDError  # noqa: E402
from mlffd.model.student import StudentConfig, StudentPotential  # noqa: E402
from mlffd.training.config import PRESETS, TrainConfig  # noqa: E402
from mlffd.export.freeze import export_checkpoint, freeze  # noqa: E402
from mlffd.training.checkpoint import read_checkpoint  # noqa: E402
from mlffd.export.load import load_frozen  # noqa: E402

SI_LATTICE = 5.431  # Angstrom, diamond Si
DIAMOND_BASIS = np.array(
    [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0],
     [0.25, 0.25, 0.25], [0.25, 0.75, 0.75], [0.75, 0.25, 0.75], [0.75, 0.75, 0.25]]
)
VARIANTS = (("ops", True), ("reference", False))
NEIGHBOUR_BYTES = 128 * 2**20  # one [chunk, N, 3] float64 tensor of the neighbour search; ~4 live at once


def log(message: str) -> None:
    print(message, flush=True)


# --- system and graph ------------------------------------------------------------------------------

def diamond_supercell(n_atoms: int, rattle: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions [N, 3] wrapped into the box, box lengths [3]) of an n x n x n Si diamond supercell.

    Rattled so that forces and virial are not zero by symmetry (the parity check divides by them)."""
    reps = round((n_atoms / 8) ** (1 / 3))
    if 8 * reps**3 != n_atoms:
        raise MLFFDError(f"size {n_atoms} is not a diamond supercell: use 8 n^3 atoms (64, 512, 4096, ...)")
    grid = np.stack(np.meshgrid(*[np.arange(reps)] * 3, indexing="ij"), axis=-1).reshape(-1, 1, 3)
    positions = ((grid + DIAMOND_BASIS[None]) * SI_LATTICE).reshape(-1, 3)
    box = np.full(3, reps * SI_LATTICE)
    positions = positions + np.random.default_rng(seed).normal(0.0, rattle, positions.shape)
    return np.mod(positions, box), box


def minimum_image_graph(positions: np.ndarray, box: np.ndarray, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Full neighbour list of an orthorhombic periodic box in the frozen model's convention:
    edge_index [2, E] sorted by centre (then neighbour), Cartesian edge_shift [E, 3] with
    r_ij = x_j - x_i + shift. Minimum image is exact only when every box length > 2 cutoff."""
    if np.any(box <= 2 * cutoff):
        raise MLFFDError(
            f"box {box.min():.3f} A is not larger than 2 x cutoff = {2 * cutoff:.3f} A: the minimum-image "
            "neighbour search would miss periodic images; use a bigger supercell"
        )
    pos = torch.from_numpy(positions)
    lengths = torch.from_numpy(box)
    n = len(pos)
    chunk = max(1, NEIGHBOUR_BYTES // (n * 3 * 8))
    index, shift = [], []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        delta = pos[None, :, :] - pos[start:stop, None, :]  # [c, n, 3]: x_j - x_i
        image = -torch.round(delta / lengths) * lengths
        delta += image
        within = (delta * delta).sum(-1) < cutoff * cutoff
        rows = torch.arange(stop - start)
        within[rows, rows + start] = False  # no self edge (its images are > 2 cutoff away)
        i, j = within.nonzero(as_tuple=True)  # row-major order: grouped by centre atom
        index.append(torch.stack([i + start, j]))
        shift.append(image[i, j])
    return torch.cat(index, dim=1), torch.cat(shift)


def cross_check_vesin(positions: np.ndarray, box: np.ndarray, cutoff: float, index: torch.Tensor,
                      shift: torch.Tensor) -> str:
    """Compare a minimum_image_graph result with mlffd.neighbours (vesin), as sorted edge sets."""
    try:
        from mlffd.neighbours import NeighbourList
    except ImportError as exc:
        return f"skipped ({exc})"
    vesin_index, vesin_shift = NeighbourList(cutoff).compute(positions, np.diag(box), True)

    def edge_set(edge_index: np.ndarray, edge_shift: np.ndarray) -> np.ndarray:
        rows = np.concatenate([edge_index.T, np.rint(edge_shift / box).astype(np.int64)], axis=1)
        return rows[np.lexsort(rows.T[::-1])]

    mine, theirs = edge_set(index.numpy(), shift.numpy()), edge_set(vesin_index, vesin_shift)
    if mine.shape != theirs.shape or not np.array_equal(mine, theirs):
        raise MLFFDError(f"neighbour search disagrees with vesin: {len(mine)} vs {len(theirs)} edges")
    return f"same {len(mine)} edges as vesin"


# --- model -------------------------------------------------------------------------------------------

def random_student(preset: str, seed: int) -> StudentPotential:
    """A student of a training preset with random weights (the same weights for every call)."""
    torch.manual_seed(seed)
    settings = TrainConfig(preset=preset).model_settings()
    return StudentPotential(StudentConfig(elements=["Si"], **settings))


def freeze_variant(args, dtype: str, use_ops: bool, path: Path) -> dict:
    if args.source:
        return export_checkpoint(args.source, path, dtype=dtype, device=args.device, use_ops=use_ops)
    return freeze(random_student(args.preset, args.seed), path, dtype=dtype, device=args.device, use_ops=use_ops,
                  teacher={"name": "random", "version": "untrained"})


# --- timing ------------------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(model, inputs: tuple, device: torch.device, warmup: int, calls: int) -> tuple[list[float], dict]:
    """Milliseconds of each timed call (after warm-up: TorchScript optimises on its first calls),
    and the last call's outputs."""
    for _ in range(warmup):
        model(*inputs)
    times = []
    for _ in range(calls):
        synchronize(device)
        start = time.perf_counter()
        out = model(*inputs)
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times, out


def describe(exc: Exception) -> dict:
    """One table-safe line (a TorchScript error's real cause is its last line) and the full text."""
    text = str(exc).strip()
    last = text.splitlines()[-1] if text else ""
    if not last.split(":", 1)[0].endswith(("Error", "Exception")):
        last = f"{type(exc).__name__}: {last}"
    return {"error": last[:300].replace("|", "/"), "error_detail": text[-3000:]}


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (b the reference)."""
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / scale if scale > 0 else float("inf")


def run_variant(args, model, graphs: dict, device: torch.device) -> tuple[list[dict], dict]:
    """Time one frozen model on every size; returns result rows and {size: outputs on CPU}."""
    rows, outputs = [], {}
    for size, (positions, index, shift, species) in graphs.items():
        edge_vec = positions[index[1]] - positions[index[0]] + shift  # float64, the artifact's input
        inputs = (edge_vec.to(device), species.to(device), index.to(device), size)
        row = {"atoms": size, "edges": index.shape[1]}
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            times, out = time_model(model, inputs, device, args.warmup, args.calls)
        except Exception as exc:  # an op without a kernel for this device: record it, time the rest
            row.update(describe(exc))
            rows.append(row)
            log(f"  {size:>6} atoms: FAILED {row['error']}")
            continue
        row.update(median_ms=statistics.median(times), min_ms=min(times), max_ms=max(times),
                   us_per_atom=statistics.median(times) * 1e3 / size, times_ms=times)
        if device.type == "cuda":
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        outputs[size] = {k: out[k].detach().to("cpu", torch.float64) for k in ("energy", "forces", "virial")}
        rows.append(row)
        log(f"  {size:>6} atoms, {row['edges']} edges: median {row['median_ms']:.3f} ms "
            f"(min {row['min_ms']:.3f}, max {row['max_ms']:.3f})")
    return rows, outputs


# --- report ------------------------------------------------------------------------------------------

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def markdown(meta: dict, table: list[dict]) -> str:
    def ms(row: dict, key: str) -> str:
        return row.get("error", "") if "error" in row else f"{row[key]:.3f}"

    cuda = meta["device"] == "cuda"
    head = ["atoms", "edges", "dtype", "ops ms", "reference ms", "speed-up", "ops us/atom"]
    head += ["peak MB ops / ref"] if cuda else []
    head += ["forces rel. diff", "energy rel. diff", "virial rel. diff"]
    lines = [
        f"# Frozen student latency on {meta['device_name']} ({meta['device']})",
        "",
        f"Milliseconds per model call (energy + forces + virial; median of {meta['calls']} calls after "
        f"{meta['warmup']} warm-ups), one run of `{meta['command']}`.",
        f"torch {meta['torch']}, {meta['threads']} CPU thread(s), {meta['date']}, "
        f"ops build: `{meta['ops_build_info']}`.",
        f"Model: {meta['model']}. {meta['notes']}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in table:
        ops, ref = row["ops"], row["reference"]
        cells = [str(row["atoms"]), str(row["edges"]), row["dtype"], ms(ops, "median_ms"), ms(ref, "median_ms")]
        both = "error" not in ops and "error" not in ref
        cells.append(f"{ref['median_ms'] / ops['median_ms']:.2f}x" if both else "")
        cells.append("" if "error" in ops else f"{ops['us_per_atom']:.2f}")
        if cuda:
            cells.append(" / ".join(f"{v['peak_mem_mb']:.0f}" if "peak_mem_mb" in v else "-" for v in (ops, ref)))
        parity = row.get("parity") or {}
        cells += [f"{parity[k]:.1e}" if k in parity else "" for k in ("forces", "energy", "virial")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Rel. diff: max over components of |ops - reference| / max |reference| (custom ops against the "
              "reference kernels: same device, same weights, same graph).", ""]
    return "\n".join(lines)


def collect(args, device: torch.device, graphs: dict) -> tuple[list[dict], bool]:
    """For each dtype, freeze + load both variants, time them, and pair them up with their parity."""
    table, failed = [], False
    with tempfile.TemporaryDirectory(prefix="mlffd_latency_") as tmp:
        for dtype_name in args.dtypes:
            by_variant, outputs = {}, {}
            for variant, use_ops in VARIANTS:
                path = Path(tmp) / f"student_{dtype_name}_{variant}.pt"
                log(f"[{dtype_name} {variant}] freeze (use_ops={use_ops}, device={args.device}) and load")
                try:
                    freeze_variant(args, dtype_name, use_ops, path)
                    model, _ = load_frozen(path, args.device)
                except MLFFDError:
                    raise
                except Exception as exc:  # e.g. scripting fails on this device: still time the other variant
                    error = describe(exc)
                    error["error"] = "freeze/load: " + error["error"]
                    log(f"  FAILED {error['error']}")
                    by_variant[variant] = {size: {"atoms": size, "edges": g[1].shape[1], **error}
                                           for size, g in graphs.items()}
                    outputs[variant], failed = {}, True
                    continue
                rows, outputs[variant] = run_variant(args, model, graphs, device)
                by_variant[variant] = {row["atoms"]: row for row in rows}
                failed |= any("error" in row for row in rows)
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            for size in graphs:
                row = {"atoms": size, "edges": by_variant["ops"][size]["edges"], "dtype": dtype_name,
                       "ops": by_variant["ops"][size], "reference": by_variant["reference"][size]}
                if size in outputs["ops"] and size in outputs["reference"]:
                    a, b = outputs["ops"][size], outputs["reference"][size]
                    row["parity"] = {"forces": relative_difference(a["forces"], b["forces"]),
                                     "energy": relative_difference(a["energy"], b["energy"]),
                                     "virial": relative_difference(a["virial"], b["virial"])}
                table.append(row)
    return table, failed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--sizes", default="64,512,4096", help="atoms, each 8 n^3 (Si diamond supercells)")
    parser.add_argument("--dtypes", default="float32", help="comma list of float32, float64")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per point (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    parser.add_argument("--source", default=None, help="run folder or checkpoint (default: random weights)")
    parser.add_argument("--preset", default="fast", choices=sorted(PRESETS), help="for random weights")
    parser.add_argument("--rattle", type=float, default=0.05, help="Gaussian displacement, Angstrom")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output stem (default benchmarks/results/device_latency_<device>)")
    args = parser.parse_args(argv)
    args.sizes = sorted({int(s) for s in args.sizes.split(",") if s})
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    for d in args.dtypes:
        if d not in ("float32", "float64"):
            parser.error(f"--dtypes: {d!r} is not float32 or float64")
    if args.calls < 1 or args.warmup < 0:
        parser.error("--calls must be >= 1 and --warmup >= 0")
    args.out = Path(args.out or ROOT / "benchmarks" / "results" / f"device_latency_{args.device}")
    return args


def cutoff_and_species(args) -> tuple[float, int]:
    """The model's cutoff and the species index of Si, from the checkpoint or the preset."""
    if not args.source:
        return float(TrainConfig(preset=args.preset).model_settings()["cutoff"]), 0
    config = StudentConfig.from_dict(read_checkpoint(args.source)["model_config"])
    if "Si" not in config.elements:
        raise MLFFDError(f"{args.source} has no Si (elements: {', '.join(config.elements)})")
    return float(config.cutoff), config.elements.index("Si")


def build_graphs(args, cutoff: float, si: int) -> tuple[dict, str]:
    """{size: (positions, edge_index, edge_shift, species)} on CPU, and the vesin cross-check's verdict."""
    graphs, check = {}, "skipped"
    for size in sorted(args.sizes):
        positions, box = diamond_supercell(size, args.rattle, args.seed)
        index, shift = minimum_image_graph(positions, box, cutoff)
        graphs[size] = (torch.from_numpy(positions), index, shift, torch.full((size,), si, dtype=torch.long))
        log(f"graph {size} atoms: box {box[0]:.3f} A, {index.shape[1]} edges "
            f"({index.shape[1] / size:.1f} per atom, cutoff {cutoff} A)")
        if size == min(args.sizes):
            check = cross_check_vesin(positions, box, cutoff, index, shift)
            log(f"neighbour cross-check at {size} atoms: {check}")
    return graphs, check


def check_setup(args) -> str:
    """Fail early, with one line, on what would otherwise be a traceback; returns build_info()."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise MLFFDError(f"--device cuda requested but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    from mlffd.export import ops

    if not ops.available():
        raise MLFFDError(f"the mlffd custom ops library could not be loaded: {ops.last_error()}")
    return torch.ops.mlffd.build_info()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        build_info = check_setup(args)
    except MLFFDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    log(f"device {args.device} ({device_name(device)}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), ops: {build_info}")
    try:
        cutoff, si = cutoff_and_species(args)
        graphs, check = build_graphs(args, cutoff, si)
        table, failed = collect(args, device, graphs)
    except MLFFDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    model = (f"trained checkpoint {args.source}" if args.source else
             f"preset {args.preset!r} with RANDOM weights (seed {args.seed}): latency does not depend on the weights")
    meta = {
        "device": args.device,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "dtypes": args.dtypes,
        "sizes": args.sizes,
        "calls": args.calls,
        "warmup": args.warmup,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "ops_build_info": build_info,
        "model": model,
        "cutoff": cutoff,
        "rattle_angstrom": args.rattle,
        "neighbour_cross_check": check,
        "notes": ("Graph built once per size: this is the model call at a fixed graph (MD latency without "
                  "neighbour search or host-device copies). Rattled Si diamond supercells."),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out.with_name(args.out.name + ".json"), args.out.with_name(args.out.name + ".md")
    json_path.write_text(json.dumps({"meta": meta, "results": table}, indent=1))
    md_path.write_text(markdown(meta, table))
    log(f"wrote {json_path} and {md_path}")
    print(md_path.read_text(), flush=True)
    if failed:
        print("error: some variants failed (see the table)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
