"""Freeze a trained student into one TorchScript file with its metadata inside (`mlffd export`)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import torch
from e3nn.util.jit import compile as e3nn_compile

from mlffd import __version__
from mlffd.data.atomic import remove_stale_temps, temp_path
from mlffd.errors import MLFFDError
from mlffd.model.registry import build_model
from mlffd.model.student import StudentPotential
from mlffd.training.checkpoint import read_checkpoint
from mlffd.export.contract import FORMAT, FORMAT_VERSION, METADATA_JSON, METADATA_TXT, metadata_text

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build_student(payload: dict, dtype: str = "float64") -> torch.nn.Module:
    # cast first, then load: a float64 checkpoint keeps its digits in a float64 export
    model = build_model(payload["model_config"]).to(DTYPES[dtype])
    model.load_state_dict(payload["model"])
    return model.eval()


def freeze(model: torch.nn.Module, path: str | Path, *, dtype: str = "float64", device: str = "cpu",
           use_ops: bool = True, teacher: dict | None = None, dataset_fingerprint: str = "",
           extra: dict | None = None) -> dict:
    """Script `model` (reference modules swapped for fused ops when `use_ops` and the architecture
    has them: the built-in StudentPotential) and save it."""
    if dtype not in DTYPES:
        raise MLFFDError(f"dtype must be float32 or float64, not {dtype!r}")
    from mlffd.export.load import check_device

    check_device(device, present=False)  # a name torch knows; presence after the ops' own checks
    ops_libraries = []
    model = model.to(DTYPES[dtype]).eval()
    for parameter in model.parameters():  # the frozen graph differentiates w.r.t. edges only
        parameter.requires_grad_(False)
    radial_tables = {}
    if use_ops and isinstance(model, StudentPotential):
        from mlffd.export import ops
        from mlffd.export.fused import RADIAL_TABLE_INTERVALS, radial_table_error, use_fused_ops

        ops.load_library()
        if device.startswith("cuda") and not ops.cuda_kernels_built():
            raise MLFFDError(f"device {device} with custom ops needs their CUDA kernels, but "
                             f"{ops.library_path()} was built without them: rebuild with CUDA torch and "
                             "CUDA_HOME set, or export with --no-ops")
        if model.lmax > 3 and device.startswith("cuda"):
            raise MLFFDError(f"device {device} with custom ops supports lmax <= 3 (this model has lmax "
                             f"{model.lmax}): export with --no-ops")
        use_fused_ops(model)
        ops_libraries = ["mlffd_ops"]
        # how far the radial tables are from the network they replace (relative to its largest value)
        radial_tables = {"intervals": RADIAL_TABLE_INTERVALS, "max_error": radial_table_error(model)}
    config = model.config
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mlffd_version": __version__,
        "cutoff": float(config.cutoff),
        "num_interactions": int(config.num_interactions),
        "elements": list(config.elements),
        "dtype": dtype,
        "ops": ops_libraries,
        "units": "metal",
        "teacher": teacher or {},
        "dataset_fingerprint": dataset_fingerprint,
        "model_config": config.to_dict(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "radial_tables": radial_tables,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    check_device(device)
    path = Path(path)
    _check_overwritable(path)
    # saved next to `path` and renamed over it: a failed save never leaves half a model behind
    # (and the temporary of an export killed outright goes at the next export)
    tmp = str(temp_path(path))
    try:  # an unwritable -o is found before the scripting, and said in one line
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        open(tmp, "wb").close()
    except OSError as exc:
        raise MLFFDError(f"cannot write {path}: {exc.strerror or exc}; choose a writable -o") from None
    try:
        scripted = e3nn_compile(model.to(device))
        try:
            torch.jit.save(scripted, tmp, _extra_files={METADATA_JSON: json.dumps(meta, indent=1),
                                                        METADATA_TXT: metadata_text(meta)})
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:  # torch says "open file failed with strerror: ..."
            reason = re.search(r"strerror: ([^\n]+)", str(exc))
            reason = reason.group(1).strip() if reason else getattr(exc, "strerror", None) or type(exc).__name__
            raise MLFFDError(f"cannot write {path}: {reason}; choose a writable -o (and space on its disk)") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return meta


def _check_overwritable(path: Path) -> None:
    """An existing output may be replaced only if it is an mlffd model (a re-export): never a
    dataset, a training checkpoint or anything else given to -o by mistake."""
    if path.is_dir():
        raise MLFFDError(f"output {path} is a directory; give a file name such as {path / 'model.pt'}")
    if not path.exists():
        return
    from mlffd.export.contract import read_metadata

    try:
        read_metadata(path)
    except MLFFDError:
        raise MLFFDError(f"output {path} exists and is not an mlffd model (a dataset, checkpoint or other file); "
                         "refusing to overwrite it: choose another -o") from None


def _check_same_run(path: Path, payload: dict) -> None:
    from mlffd.export.contract import read_metadata

    try:
        meta = read_metadata(path)
    except MLFFDError:
        return  # not a model: _check_overwritable refuses it with its own message
    teacher = payload.get("teacher") or {}
    old_teacher = meta.get("teacher") or {}
    if old_teacher != teacher or meta.get("dataset_fingerprint", "") != payload.get("dataset_fingerprint", ""):
        raise MLFFDError(f"{path} holds a model of another run (teacher {old_teacher.get('name')!r}, dataset "
                         f"{meta.get('dataset_fingerprint') or '?'}); give -o {path} to replace it, or another -o")


def export_checkpoint(source: str | Path, out: str | Path, dtype: str = "float64", device: str = "cpu",
                      use_ops: bool = True, replace_other_run: bool = True, with_uncertainty: bool = True) -> dict:
    """Freeze a run's best.pt to `out`. With replace_other_run False (`mlffd export` without -o),
    an existing model exported from another run (another teacher or dataset) is refused rather than
    replaced. with_uncertainty False leaves the per-atom uncertainty out (the graph without it: its
    cost per step is gone, and the file says it carries none)."""
    payload = read_checkpoint(source)
    if not replace_other_run and Path(out).is_file():
        _check_same_run(Path(out), payload)
    model = build_student(payload, dtype)
    statistics = payload.get("descriptor_statistics") if with_uncertainty else None
    uncertainty = {}
    if statistics is not None:  # runs trained before mlffd had them export without an uncertainty
        model.set_descriptor_statistics(statistics["mean"], statistics["precision"])
        uncertainty = {"measure": "descriptor_mahalanobis", "dimension": int(len(statistics["mean"])),
                       "training_atoms": statistics["training_atoms"],
                       "train_quantiles": statistics["train_quantiles"]}
    extra = {"validation_metrics": payload.get("metrics", {}),
             "training_temperatures_k": payload.get("training_temperatures_k", []),
             "uncertainty": uncertainty}
    return freeze(model, out, dtype=dtype, device=device, use_ops=use_ops, teacher=payload.get("teacher"),
                  dataset_fingerprint=payload.get("dataset_fingerprint", ""), extra=extra)
