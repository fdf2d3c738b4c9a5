"""The docs that hosts code against are checked against their single sources: the metadata keys of
docs/artifact.md against what `mlffd export` writes, the op table of docs/custom_ops.md against the
ops the library registers."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _metadata(path: Path) -> tuple[dict, str]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        meta = json.loads(archive.read(next(n for n in names if n.endswith("extra/mlffd/metadata.json"))))
        text = archive.read(next(n for n in names if n.endswith("extra/mlffd/metadata.txt"))).decode()
    return meta, text


def test_artifact_doc_lists_the_metadata_export_writes(tmp_path, emt_cu_student):
    from mlffd.export.testing import make_demo_model

    doc = (ROOT / "docs" / "artifact.md").read_text()
    flat = re.search(r"## Metadata.*?```\n(.*?)```", doc, re.S).group(1)
    documented_flat = [line.split()[0] for line in flat.splitlines() if line.strip()]
    keys = set()
    for model in (make_demo_model(tmp_path / "random.pt"), emt_cu_student):  # random weights; a trained run
        meta, text = _metadata(model)
        assert [line.split()[0] for line in text.splitlines()] == documented_flat
        keys |= set(meta)
        for table in ("radial_tables", "uncertainty"):  # the keys of these nested tables too
            value = meta.get(table) or {}
            keys |= set(value) | {k for v in value.values() if isinstance(v, dict) for k in v}
    undocumented = sorted(k for k in keys if f"`{k}`" not in doc and k not in documented_flat)
    assert not undocumented, f"docs/artifact.md does not describe these metadata keys: {undocumented}"
    named = set(re.findall(r"`([a-z_]+)`", doc.split("## Metadata", 1)[1].split("## Call", 1)[0]))
    stale = sorted(named - keys - {"radial_tables", "intervals", "max_error", "value", "derivative", "name",
                                   "version", "descriptor_mahalanobis"} - set(documented_flat))
    assert not stale, f"docs/artifact.md describes metadata keys that export never writes: {stale}"


def test_custom_ops_doc_names_exactly_the_registered_ops():
    from mlffd.export import ops

    ops.load_library()  # builds them if needed; a build failure fails the test
    registered = {name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("mlffd::")}
    doc = (ROOT / "docs" / "custom_ops.md").read_text()
    named = set(re.findall(r"mlffd::([a-z_]+)", doc))
    public = {name for name in registered if not name.endswith("_backward")}  # backward ops are internal
    assert public - named == set(), f"ops registered but not in docs/custom_ops.md: {sorted(public - named)}"
    assert named - registered == set(), f"docs/custom_ops.md names ops that do not exist: {sorted(named - registered)}"
