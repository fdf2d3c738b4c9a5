"""Structures, sampling and the HDF5 dataset of teacher labels (see docs/data.md)."""

from mlffd.data.dataset import Dataset, open_dataset, summarize_dataset
from mlffd.data.extxyz import export_extxyz, import_extxyz
from mlffd.data.writer import DatasetWriter

__all__ = [
    "Dataset",
    "DatasetWriter",
    "export_extxyz",
    "import_extxyz",
    "open_dataset",
    "summarize_dataset",
]
