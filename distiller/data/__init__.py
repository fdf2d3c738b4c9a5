"""Structures, sampling and the HDF5 dataset of teacher labels (see docs/data.md)."""

from mlffd.data.dataset import (
    Dataset,
    DatasetWriter,
    export_extxyz,
    import_extxyz,
    open_dataset,
    summarize_dataset,
)

__all__ = [
    "Dataset",
    "DatasetWriter",
    "export_extxyz",
    "import_extxyz",
    "open_dataset",
    "summarize_dataset",
]
