"""Load a frozen model: check its metadata, load the custom ops it needs, then TorchScript."""

from __future__ import annotations

from pathlib import Path

import torch

from mlffd.errors import MLFFDError
from mlffd.export.contract import read_metadata


def check_device(device: str, present: bool = True) -> None:
    """A device mlffd knows: cpu or cuda[:N]; with `present`, one this machine has."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise MLFFDError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if kind not in ("cpu", "cuda"):
        raise MLFFDError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    if present and kind == "cuda" and not torch.cuda.is_available():
        raise MLFFDError("device cuda requested but this torch has no CUDA device")


def load_frozen(path: str | Path, device: str = "cpu") -> tuple[torch.jit.ScriptModule, dict]:
    meta = read_metadata(path)
    check_device(device)
    on_cuda = device.startswith("cuda")
    if meta["ops"]:
        from mlffd.export import ops

        try:
            ops.load_library()
        except Exception as exc:  # a build failure must say what is missing, not dump a traceback
            raise MLFFDError(f"{path} needs the mlffd custom ops, which could not be loaded: {exc}") from None
        if on_cuda and not ops.cuda_kernels_built():
            raise MLFFDError(f"{path} uses the mlffd custom ops, but {ops.library_path()} was built without "
                             "CUDA kernels (CUDA_HOME unset at build time?): delete it to rebuild, or export "
                             "with --no-ops")
    model = torch.jit.load(str(path), map_location=device)
    model.eval()
    return model, meta
