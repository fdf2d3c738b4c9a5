"""Load a frozen model: check its metadata, load the custom ops it needs, then TorchScript."""

from __future__ import annotations

from pathlib import Path

import torch

from distiller.errors import MLFFDError
from export.contract import read_metadata


def load_frozen(path: str | Path, device: str = "cpu") -> tuple[torch.jit.ScriptModule, dict]:
    meta = read_metadata(path)
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise MLFFDError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    on_cuda = device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        raise MLFFDError("device cuda requested but this torch has no CUDA device")
    if meta["ops"]:
        from export import ops

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
