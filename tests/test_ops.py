"""The fused custom ops (`torch.ops.mlffd.*`, export/ops): same numbers and gradients as the
pure-PyTorch reference, usable from TorchScript, saved models reload in a fresh process."""

import contextlib
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from mlffd.export import ops
from mlffd.export.ops import cuda_check
from mlffd.model import kernels as reference


@pytest.fixture(scope="module")
def lib():
    return ops.load_library()


def random_inputs(n_edges, n_nodes, channels, lmax, dtype=torch.float64, seed=0, empty_atoms=(), requires_grad=False):
    """Random sorted graph; atoms listed in `empty_atoms` get no edges."""
    g = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([i for i in range(n_nodes) if i not in set(empty_atoms)], dtype=torch.long)
    if n_edges and len(allowed):
        centre, _ = torch.sort(allowed[torch.randint(0, len(allowed), (n_edges,), generator=g)])
    else:
        centre = torch.zeros(0, dtype=torch.long)
        n_edges = 0
    weights = torch.randn(n_edges, lmax + 1, channels, generator=g, dtype=torch.float64).to(dtype)
    sh = torch.randn(n_edges, (lmax + 1) ** 2, generator=g, dtype=torch.float64).to(dtype)
    if requires_grad:
        weights.requires_grad_(True)
        sh.requires_grad_(True)
    return weights, sh, centre


def tolerances(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)


# Parity tests run on every device this machine has: the reference is computed on the CPU, the op
# on the device. CI has no GPU, so "cuda" runs where one is lent (benchmarks/gpu_check.sh).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA device on this machine"))]


def to_device(device, *tensors):
    """Leaf copies of `tensors` on `device`, keeping requires_grad."""
    return [t.detach().to(device).requires_grad_(t.requires_grad) for t in tensors]


# --- library and API -----------------------------------------------------------------------------

def test_api(lib):
    assert ops.available() is True
    assert ops.load_library() == lib  # idempotent
    assert Path(lib).is_file()
    assert Path(ops.library_path()).name == "mlffd_ops.so"
    assert Path(ops.build_directory()).is_absolute()
    info = torch.ops.mlffd.build_info()
    assert "openmp=1" in info, info  # at::parallel_for is serial without -fopenmp
    assert torch._C._dispatch_has_kernel_for_dispatch_key("mlffd::edge_graph", "CPU")  # what available() checks


def test_sources_are_pure_libtorch():
    sources = ops.source_files()
    assert sources and all(Path(s).is_absolute() and Path(s).is_file() for s in sources)
    assert all(s.endswith(".cpp") for s in sources)
    assert any(s.endswith(".cu") for s in ops.source_files(cuda=True))
    csrc = Path(sources[0]).parent
    for path in list(csrc.glob("*.cpp")) + list(csrc.glob("*.cu")) + list(csrc.glob("*.h")):
        includes = re.findall(r'#include\s*[<"]([^>"]+)[>"]', path.read_text())
        for inc in includes:
            assert "Python" not in inc and "pybind" not in inc and inc != "torch/extension.h", (path, inc)


# --- conv_scatter_h: edge cases and argument errors (its parity tests are further down) ------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_nodes", [0, 4])
def test_conv_scatter_h_empty_edge_set(lib, device, n_nodes):
    w, h, sh, centre, neighbour = to_device(device, *random_conv_h(0, n_nodes, 3, 2))
    w.requires_grad_(True)
    sh.requires_grad_(True)
    out = torch.ops.mlffd.conv_scatter_h(w, h, sh, centre, neighbour, 2)
    assert out.shape == (n_nodes, 3, 9) and torch.all(out == 0)
    gw, gsh = torch.autograd.grad(out.sum(), [w, sh], allow_unused=True)
    assert gw is None or gw.shape == (0, 3, 3)


def test_conv_scatter_h_non_contiguous_inputs(lib):
    w, h, sh, centre, neighbour = random_conv_h(120, 9, 5, 2)
    w_nc = w.transpose(1, 2).contiguous().transpose(1, 2)  # same values, channel stride != 1
    sh_nc = torch.cat([sh, sh], dim=1)[:, :9]
    h_nc = h.t().contiguous().t()
    assert not w_nc.is_contiguous() and not sh_nc.is_contiguous() and not h_nc.is_contiguous()
    torch.testing.assert_close(torch.ops.mlffd.conv_scatter_h(w_nc, h_nc, sh_nc, centre, neighbour, 2),
                               reference.conv_scatter_h(w, h, sh, centre, neighbour, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("unsorted centre", r"centre must be sorted ascending .*centre\[\d+\] = \d+ > centre\[\d+\]"),
        ("negative centre", r"centre\[0\] = -1 is outside \[0, n_nodes=8\)"),
        ("centre >= n_nodes", r"is outside \[0, n_nodes=8\)"),
        ("int32 centre", "centre must be int64"),
        ("dtype mismatch", "sh dtype .* must equal"),
        ("integer radial", "radial must be float32 or float64"),
        ("wrong lmax", r"radial must be \[E, lmax\+1, C\] with lmax=2"),
        ("wrong sh width", r"sh must be \[E, \(lmax\+1\)\^2\]"),
        ("wrong centre length", r"centre must be \[E\]"),
    ],
)
def test_conv_scatter_h_bad_inputs(lib, case, pattern):
    w, h, sh, centre, neighbour = random_conv_h(30, 8, 4, 1, seed=1)
    lmax = 1
    if case == "unsorted centre":
        centre = centre.clone()
        centre[[3, 25]] = centre[[25, 3]]
    elif case == "negative centre":
        centre = centre.clone()
        centre[0] = -1
    elif case == "centre >= n_nodes":
        centre = centre.clone()
        centre[-1] = 8
    elif case == "int32 centre":
        centre = centre.int()
    elif case == "dtype mismatch":
        sh = sh.float()
    elif case == "integer radial":
        w, h, sh = w.long(), h.long(), sh.long()
    elif case == "wrong lmax":
        lmax = 2
    elif case == "wrong sh width":
        sh = sh[:, :3]
    elif case == "wrong centre length":
        centre = centre[:-1]
    with pytest.raises(RuntimeError, match=pattern):
        torch.ops.mlffd.conv_scatter_h(w, h, sh, centre, neighbour, lmax)


# --- TorchScript -----------------------------------------------------------------------------------

class EnergyAndGrads(torch.nn.Module):
    """Scripted module that, like the frozen student, takes gradients inside its forward."""

    def __init__(self, n_nodes: int, lmax: int):
        super().__init__()
        self.n_nodes = n_nodes
        self.lmax = lmax

    def forward(self, radial: torch.Tensor, h: torch.Tensor, sh: torch.Tensor, centre: torch.Tensor,
                neighbour: torch.Tensor):
        radial = radial.detach().requires_grad_(True)
        sh = sh.detach().requires_grad_(True)
        out = torch.ops.mlffd.conv_scatter_h(radial, h, sh, centre, neighbour, self.lmax)
        assert out.shape[0] == self.n_nodes
        energy = (out * out).sum()
        grad_outputs: list[torch.Tensor | None] = [torch.ones_like(energy)]
        grads = torch.autograd.grad([energy], [radial, sh], grad_outputs=grad_outputs)
        gw = grads[0]
        gsh = grads[1]
        assert gw is not None and gsh is not None
        return out.detach(), gw, gsh


def test_scripted_module_reloads_in_fresh_process(lib, tmp_path):
    w, h, sh, centre, neighbour = random_conv_h(80, 10, 4, 2, seed=5, empty_atoms=(2,))
    module = torch.jit.script(EnergyAndGrads(10, 2))
    out, gw, gsh = module(w, h, sh, centre, neighbour)
    ref_out = reference.conv_scatter_h(w.requires_grad_(True), h, sh.requires_grad_(True), centre, neighbour, 2)
    ref_gw, ref_gsh = torch.autograd.grad((ref_out * ref_out).sum(), [w, sh])
    for a, b in zip((out, gw, gsh), (ref_out, ref_gw, ref_gsh)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    model_path, data_path, result_path = tmp_path / "m.pt", tmp_path / "in.pt", tmp_path / "out.pt"
    module.save(str(model_path))
    torch.save({"w": w.detach(), "h": h, "sh": sh.detach(), "centre": centre, "neighbour": neighbour}, data_path)
    script = textwrap.dedent(f"""
        import torch
        from mlffd.export import ops
        try:
            torch.jit.load({str(model_path)!r})
            raise SystemExit("loaded without the library")
        except RuntimeError as exc:
            assert "mlffd" in str(exc), exc
        ops.load_library()
        module = torch.jit.load({str(model_path)!r})
        d = torch.load({str(data_path)!r})
        torch.save(list(module(d["w"], d["h"], d["sh"], d["centre"], d["neighbour"])), {str(result_path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for a, b in zip(torch.load(result_path), (out, gw, gsh)):
        assert torch.equal(a, b)


def test_frozen_student_with_fused_ops_matches_reference(lib, tmp_path):
    """e3nn-compiled student (mlffd.export.freeze with use_ops) calls the ops and gives the reference numbers
    (within the radial table's interpolation error)."""
    from mlffd.export.load import load_frozen
    from mlffd.export.testing import make_demo_model

    fused, meta = load_frozen(make_demo_model(tmp_path / "ops.pt", elements=("Si", "O"), use_ops=True, seed=3))
    plain, _ = load_frozen(make_demo_model(tmp_path / "ref.pt", elements=("Si", "O"), use_ops=False, seed=3))
    assert meta["ops"] == ["mlffd_ops"] and meta["radial_tables"]["intervals"] > 0
    assert "mlffd.spline_conv" in fused.code and "mlffd.interaction_node" in fused.code
    g = torch.Generator().manual_seed(0)
    n = 30
    pos = torch.rand(n, 3, generator=g, dtype=torch.float64) * 6.0
    dist = (pos[None] - pos[:, None]).norm(dim=-1)
    i, j = ((dist < 4.0) & ~torch.eye(n, dtype=torch.bool)).nonzero(as_tuple=True)  # sorted by centre
    args = (pos[j] - pos[i], torch.randint(0, 2, (n,), generator=g), torch.stack([i, j]), n)
    a, b = fused(*args), plain(*args)
    for key in ("energy", "forces", "virial", "atom_virial"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6 * b[key].abs().max().item())


def test_available_never_raises(tmp_path):
    """A library that cannot be built makes available() False (in a fresh process: loads are cached)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    script = "from mlffd.export import ops; print(ops.available(), ops.last_error() is not None)"
    env = {**os.environ, "MLFFD_OPS_DIR": str(blocker / "ops")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "True"]


# --- CUDA sources: compiled with nvcc on every machine, run only where a GPU is lent ----------------

needs_nvcc = pytest.mark.skipif(cuda_check.nvcc_path() is None, reason="nvcc is not installed")


@needs_nvcc
def test_cuda_sources_compile(tmp_path):
    """Every .cu file compiles against this torch's headers and every mlffd function the C++ and CUDA
    objects call across files is defined (what a CUDA build links)."""
    objects = cuda_check.compile_cuda_sources(tmp_path)
    names = {obj.name for obj in objects}
    assert {"fused_edge_cuda.cu.o", "spline_edge_cuda.cu.o", "fused_edge.cpp.o"} <= names, names


@needs_nvcc
def test_cuda_check_fails_on_broken_sources(tmp_path, monkeypatch):
    broken = tmp_path / "broken.cu"
    broken.write_text('#include "kernel_math.h"\n__global__ void k(float* x) { x[0] = undeclared_name; }\n')
    monkeypatch.setattr(ops, "source_files", lambda cuda=False: [str(broken)])
    with pytest.raises(RuntimeError, match="undeclared_name"):
        cuda_check.compile_cuda_sources(tmp_path / "a")
    caller = tmp_path / "caller.cpp"
    caller.write_text("namespace mlffd { void launcher_cuda(); }\nvoid call() { mlffd::launcher_cuda(); }\n")
    monkeypatch.setattr(ops, "source_files", lambda cuda=False: [str(caller)])
    with pytest.raises(RuntimeError, match="launcher_cuda"):
        cuda_check.compile_cuda_sources(tmp_path / "b")


# --- fused export ops: conv_scatter_h, edge_graph, radial_spline, spline_conv, interaction_node, edge_forces_virial ---

FUSED_OPS = ("conv_scatter_h", "edge_graph", "radial_spline", "spline_conv", "interaction_node", "edge_forces_virial")


def random_conv_h(n_edges, n_nodes, channels, lmax, dtype=torch.float64, seed=0, empty_atoms=()):
    w, sh, centre = random_inputs(n_edges, n_nodes, channels, lmax, dtype, seed, empty_atoms)
    g = torch.Generator().manual_seed(seed + 100)
    neighbour = torch.randint(0, max(n_nodes, 1), (len(centre),), generator=g)  # no edges when n_nodes = 0
    h = torch.randn(n_nodes, channels, generator=g, dtype=torch.float64).to(dtype)
    return w, h, sh, centre, neighbour


def random_vectors(n, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    vec = torch.randn(n, 3, generator=g, dtype=torch.float64) * 2.0
    return vec.to(dtype)


def random_graph(n_nodes=40, box=7.0, cutoff=4.0, seed=0, dtype=torch.float64):
    """Atoms in a box, all pairs closer than cutoff + 1 (some edges beyond the cutoff): (vec, centre, neighbour)."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n_nodes, 3, generator=g, dtype=torch.float64) * box
    dist = (pos[None] - pos[:, None]).norm(dim=-1)
    i, j = ((dist < cutoff + 1.0) & (dist > 0.4)).nonzero(as_tuple=True)  # sorted by centre
    return (pos[j] - pos[i]).to(dtype), i, j


def smooth_table(n_int, width, r_max=4.0, seed=0, dtype=torch.float64):
    """A radial table of smooth random functions (a continuous cubic Hermite spline, like the fitted ones)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.linspace(0, r_max, n_int + 1, dtype=torch.float64)
    freq = torch.rand(width, generator=g, dtype=torch.float64) * 3 + 0.5
    phase = torch.rand(width, generator=g, dtype=torch.float64) * 6
    env = (1 - r / r_max) ** 3
    y = torch.sin(freq * r[:, None] + phase) * env[:, None]
    dy = (freq * torch.cos(freq * r[:, None] + phase) * env[:, None]
          - 3 / r_max * torch.sin(freq * r[:, None] + phase) * ((1 - r / r_max) ** 2)[:, None]) * (r_max / n_int)
    y0, y1, d0, d1 = y[:-1], y[1:], dy[:-1], dy[1:]
    table = torch.stack([y0, d0, 3 * (y1 - y0) - 2 * d0 - d1, 2 * (y0 - y1) + d0 + d1], 1)
    return table.to(dtype)


def graph_of(centre, neighbour, n_nodes):
    return torch.ops.mlffd.edge_graph(centre, neighbour, n_nodes)


def test_fused_ops_registered(lib):
    # interaction_node is one device-generic composite of ATen calls; the others have a kernel per device
    device_keys = ["CPU"] + (["CUDA"] if "cuda=1" in torch.ops.mlffd.build_info() else [])
    for name in FUSED_OPS:
        for key in device_keys if name != "interaction_node" else ["CompositeExplicitAutograd"]:
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"mlffd::{name}", key), (name, key)
    for name in ("conv_scatter_h", "radial_spline", "spline_conv", "interaction_node"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"mlffd::{name}", "Autograd"), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lmax", [0, 1, 2, 3])
def test_conv_scatter_h_matches_reference(lib, device, dtype, lmax):
    w, h, sh, centre, neighbour = random_conv_h(300, 20, 7, lmax, dtype, seed=lmax, empty_atoms=(0, 5, 19))
    inputs = [t.requires_grad_(True) for t in (w, h, sh)]
    on_device = to_device(device, w, h, sh, centre, neighbour)
    out = torch.ops.mlffd.conv_scatter_h(*on_device, lmax)
    expected = reference.conv_scatter_h(w, h, sh, centre, neighbour, lmax)
    torch.testing.assert_close(out.cpu(), expected, **tolerances(dtype))
    gout = torch.randn_like(expected)
    fused = torch.autograd.grad(out, on_device[:3], gout.to(device))
    for a, b in zip(fused, torch.autograd.grad(expected, inputs, gout)):
        torch.testing.assert_close(a.cpu(), b, **tolerances(dtype))
    # a second call gives the same bits: no atomics, fixed summation order on every device
    again = torch.ops.mlffd.conv_scatter_h(*on_device, lmax)
    assert torch.equal(again, out)
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(again, on_device[:3], gout.to(device)), fused))


def test_conv_scatter_h_gradcheck_and_no_double_backward(lib):
    w, h, sh, centre, neighbour = random_conv_h(16, 6, 3, 2, seed=3, empty_atoms=(0,))
    inputs = tuple(t.requires_grad_(True) for t in (w, h, sh))
    fn = lambda w, h, sh: torch.ops.mlffd.conv_scatter_h(w, h, sh, centre, neighbour, 2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    g = torch.autograd.grad(fn(*inputs).sum(), inputs[0], create_graph=False)[0]
    assert g.shape == w.shape
    with pytest.raises(RuntimeError, match="only first-order gradients"):
        torch.autograd.grad(fn(*inputs).sum(), inputs[0], create_graph=True)


def test_conv_scatter_h_h_without_grad_and_threads(lib):
    w, h, sh, centre, neighbour = random_conv_h(4000, 150, 16, 2, torch.float32, seed=2)
    w.requires_grad_(True)
    sh.requires_grad_(True)
    h2 = h.clone().requires_grad_(True)
    gout = torch.randn(150, 16, 9)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = torch.ops.mlffd.conv_scatter_h(w, h2, sh, centre, neighbour, 2)
            results.append([out, *torch.autograd.grad(out, [w, h2, sh], gout)])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)
    gw, gsh = torch.autograd.grad(torch.ops.mlffd.conv_scatter_h(w, h, sh, centre, neighbour, 2), [w, sh], gout)
    torch.testing.assert_close(gw, results[0][1])
    with pytest.raises(RuntimeError, match=r"neighbour\[0\] = 150 is outside"):
        bad = neighbour.clone()
        bad[0] = 150
        torch.ops.mlffd.conv_scatter_h(w, h, sh, centre, bad, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_edge_graph(lib, device):
    _, centre, neighbour = random_graph(seed=1)
    n = 42  # two atoms without edges at the end
    rowptr, nb_order, nb_start = (t.cpu() for t in graph_of(*to_device(device, centre, neighbour), n))
    assert torch.equal(rowptr, torch.searchsorted(centre, torch.arange(n + 1)))
    order = torch.sort(neighbour, stable=True).indices
    assert torch.equal(nb_order, order)
    assert torch.equal(nb_start, torch.searchsorted(neighbour[order], torch.arange(n + 1)))
    empty = torch.zeros(0, dtype=torch.long, device=device)
    rowptr, nb_order, nb_start = graph_of(empty, empty, 3)
    assert rowptr.tolist() == [0] * 4 and nb_order.numel() == 0 and nb_start.tolist() == [0] * 4
    bad = centre.clone()
    bad[[3, 200]] = bad[[200, 3]]
    with pytest.raises(RuntimeError, match="sorted ascending"):
        graph_of(*to_device(device, bad, neighbour), n)
    with pytest.raises(RuntimeError, match="outside|in \\[0, n_nodes"):
        graph_of(*to_device(device, centre, neighbour), 30)
    with pytest.raises(RuntimeError, match="int64"):
        graph_of(*to_device(device, centre.int(), neighbour), n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_radial_spline_matches_reference_and_finite_differences(lib, device, dtype):
    table = smooth_table(256, 12, dtype=dtype)
    length = (torch.rand(500, dtype=torch.float64) * 5.0).to(dtype)  # some beyond r_max = 4
    length[:3] = torch.tensor([0.0, 4.0, 3.9999999])
    length.requires_grad_(True)
    (length_d,) = to_device(device, length)
    out = torch.ops.mlffd.radial_spline(length_d, table.to(device), 4.0)
    expected = reference.radial_spline(length, table, 4.0)
    tol = tolerances(dtype)
    torch.testing.assert_close(out.cpu(), expected, **tol)
    assert torch.all(out[length_d >= 4.0] == 0)
    g = torch.randn_like(expected)
    (a,) = torch.autograd.grad(out, [length_d], g.to(device))
    (b,) = torch.autograd.grad(expected, [length], g)
    torch.testing.assert_close(a.cpu(), b, **tol)
    if dtype == torch.float64:  # the derivative is the spline's own: finite differences agree
        inside = (length[3:40].detach() % (4.0 / 256) > 1e-4).nonzero().flatten()[:20] + 3  # away from the knots
        fn = lambda r: torch.ops.mlffd.radial_spline(r, table.to(device), 4.0)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (length_d[inside].detach().requires_grad_(True),))
    with pytest.raises(RuntimeError, match="only first-order gradients"):
        torch.autograd.grad(torch.ops.mlffd.radial_spline(length_d, table.to(device), 4.0).sum(), [length_d],
                            create_graph=True)
    with pytest.raises(RuntimeError, match=r"table must be \[n_intervals, 4, K\]"):
        torch.ops.mlffd.radial_spline(length_d, table[:, :3].to(device), 4.0)


def spline_conv_inputs(lmax, channels, dtype, seed=0, n_int=128, device="cpu"):
    vec, centre, neighbour = random_graph(seed=seed)
    n = 42
    h = torch.randn(n, channels, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    table = smooth_table(n_int, (lmax + 1) * channels, seed=seed, dtype=dtype)
    return vec.to(dtype), h, table, centre, neighbour, n


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lmax, channels", [(0, 16), (1, 8), (2, 16), (2, 5), (3, 32)])
def test_spline_conv_matches_reference(lib, device, dtype, lmax, channels):
    """Spherical harmonics, radial table, product with h and sum per centre in one op: the reference
    composed of e3nn, the table's cubic pieces and conv_scatter_h (compile-time and runtime channel
    counts, edges beyond the cutoff, atoms without edges)."""
    vec, h, table, centre, neighbour, n = spline_conv_inputs(lmax, channels, dtype, seed=lmax)
    vec.requires_grad_(True)
    h.requires_grad_(True)
    vec_d, h_d, table_d, neighbour_d = to_device(device, vec, h, table, neighbour)
    graph = graph_of(centre.to(device), neighbour_d, n)
    out = torch.ops.mlffd.spline_conv(vec_d, h_d, table_d, neighbour_d, *graph, 4.0, lmax)
    expected = reference.spline_conv(vec, h, table, centre, neighbour, 4.0, lmax)
    assert out.shape == ((lmax + 1) ** 2, n, channels)
    tol = tolerances(dtype)
    torch.testing.assert_close(out.cpu(), expected, **tol)
    assert torch.all(out[:, -2:] == 0)
    g = torch.randn_like(expected)
    fused = torch.autograd.grad(out, [vec_d, h_d], g.to(device))
    for a, b in zip(fused, torch.autograd.grad(expected, [vec, h], g)):
        scale = b.abs().max().item()
        torch.testing.assert_close(a.cpu(), b, rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1.0))
    beyond = vec.detach().norm(dim=1) >= 4.0
    assert beyond.any() and torch.all(fused[0][beyond.to(device)] == 0)
    (h_only,) = torch.autograd.grad(torch.ops.mlffd.spline_conv(vec_d.detach(), h_d, table_d, neighbour_d, *graph,
                                                                4.0, lmax), [h_d], g.to(device))
    assert torch.equal(h_only, fused[1])
    again = torch.ops.mlffd.spline_conv(vec_d, h_d, table_d, neighbour_d, *graph, 4.0, lmax)
    assert torch.equal(again, out)


def test_spline_conv_gradcheck_blocks_threads_and_errors(lib):
    vec, h, table, centre, neighbour, n = spline_conv_inputs(2, 3, torch.float64, seed=5, n_int=64)
    keep = (vec.norm(dim=1) - 4.0).abs() > 1e-3  # not straddling the cutoff
    vec, centre, neighbour = vec[keep][:60], centre[keep][:60], neighbour[keep][:60]
    graph = graph_of(centre, neighbour, n)
    fn = lambda v, hh: torch.ops.mlffd.spline_conv(v, hh, table, neighbour, *graph, 4.0, 2)  # noqa: E731
    # first derivatives by finite differences (the op differentiates its own cubic pieces exactly)
    assert torch.autograd.gradcheck(fn, (vec.clone().requires_grad_(True), h.clone().requires_grad_(True)))
    with pytest.raises(RuntimeError, match="only first-order gradients"):
        v = vec.clone().requires_grad_(True)
        torch.autograd.grad(fn(v, h).sum(), [v], create_graph=True)
    # an atom with more edges than one block of the CPU kernels (64), and 1 vs 2 threads: same bits
    vec, h, table, centre, neighbour, n = spline_conv_inputs(2, 16, torch.float32, seed=6)
    many = torch.randn(150, 3, generator=torch.Generator().manual_seed(1)) * 1.5
    vec = torch.cat([many, vec]).requires_grad_(True)
    centre, neighbour = torch.cat([torch.zeros(150, dtype=torch.long), centre]), torch.cat([neighbour[:150], neighbour])
    graph = graph_of(centre, neighbour, n)
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            out = torch.ops.mlffd.spline_conv(vec, h, table, neighbour, *graph, 4.0, 2)
            results.append([out, *torch.autograd.grad(out.square().sum(), [vec])])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)
    expected = reference.spline_conv(vec, h, table, centre, neighbour, 4.0, 2)
    torch.testing.assert_close(results[0][0], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match=r"table must be \[n_intervals, 4, \(lmax\+1\) C\]"):
        torch.ops.mlffd.spline_conv(vec, h, table[:, :, :-1], neighbour, *graph, 4.0, 2)
    with pytest.raises(RuntimeError, match=r"lmax must be in \[0, 3\]"):
        torch.ops.mlffd.spline_conv(vec, h, table, neighbour, *graph, 4.0, 4)
    bad = neighbour.clone()
    bad[0] = n
    with pytest.raises(RuntimeError, match=r"neighbour\[0\] = 42 is outside"):
        torch.ops.mlffd.spline_conv(vec, h, table, bad, *graph, 4.0, 2)


def test_spline_conv_cpu_kernel_builds_agree(lib, tmp_path):
    """The AVX2 + FMA build of the CPU kernels (chosen at run time where the CPU has it) and the
    portable build (MLFFD_CPU_KERNELS=generic) agree to float32 rounding (same order of operations;
    fused multiply-adds round once)."""
    assert re.search(r"cpu_kernels=(avx2|generic)", torch.ops.mlffd.build_info())
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from mlffd.export import ops
        ops.load_library()
        from test_ops import graph_of, spline_conv_inputs
        out = []
        for lmax, channels in ((2, 16), (1, 8), (3, 5)):
            vec, h, table, centre, neighbour, n = spline_conv_inputs(lmax, channels, torch.float32, seed=lmax)
            vec.requires_grad_(True)
            h.requires_grad_(True)
            basis = torch.ops.mlffd.spline_conv(vec, h, table, neighbour, *graph_of(centre, neighbour, n), 4.0, lmax)
            out += [basis.detach(), *torch.autograd.grad(basis.square().sum(), [vec, h])]
        torch.save(out, sys.argv[1])
        print(torch.ops.mlffd.build_info())
    """)
    results = []
    for kernels in ("generic", ""):
        env = {**os.environ, "MLFFD_CPU_KERNELS": kernels}
        out = tmp_path / f"kernels_{kernels or 'default'}.pt"
        proc = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True,
                              text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert ("cpu_kernels=generic" in proc.stdout) == (kernels == "generic"), proc.stdout
        results.append(torch.load(out))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def node_inputs(channels=6, lmax=2, hidden=10, out=None, n=25, dtype=torch.float64, seed=0, products=None):
    g = torch.Generator().manual_seed(seed)
    out = channels if out is None else out
    products = channels if products is None else products
    rnd = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    m = (lmax + 1) ** 2
    return (rnd(n, channels), rnd(m, n, channels), rnd(lmax + 1, channels, 2 * products) / channels ** 0.5,
            rnd(hidden, 2 * channels + (lmax + 1) * products), rnd(hidden), rnd(out, hidden), rnd(out))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lmax, residual, products", [(0, True, None), (2, True, None), (2, False, None),
                                                      (3, False, None), (2, True, 15), (2, False, 4)])
def test_interaction_node_matches_reference(lib, device, dtype, lmax, residual, products):
    h, basis, *weights = node_inputs(lmax=lmax, out=None if residual else 1, dtype=dtype, seed=lmax,
                                     products=products)
    h.requires_grad_(True)
    basis.requires_grad_(True)
    h_d, basis_d, *weights_d = to_device(device, h, basis, *weights)
    out = torch.ops.mlffd.interaction_node(h_d, basis_d, *weights_d, residual)
    expected = reference.interaction_node(h, basis, *weights, residual)
    tol = tolerances(dtype)
    torch.testing.assert_close(out.cpu(), expected, **tol)
    g = torch.randn_like(expected)
    want = torch.autograd.grad(expected, [h, basis], g)
    for a, b in zip(torch.autograd.grad(out, [h_d, basis_d], g.to(device)), want):
        torch.testing.assert_close(a.cpu(), b, **tol)
    (only_basis,) = torch.autograd.grad(torch.ops.mlffd.interaction_node(h_d.detach(), basis_d, *weights_d, residual),
                                        [basis_d], g.to(device))
    torch.testing.assert_close(only_basis.cpu(), want[1], **tol)


def test_interaction_node_gradcheck_and_refusals(lib):
    h, basis, *weights = node_inputs(channels=3, hidden=4, n=5)
    fn = lambda hh, bb: torch.ops.mlffd.interaction_node(hh, bb, *weights, True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (h.requires_grad_(True), basis.requires_grad_(True)))
    with pytest.raises(RuntimeError, match="only first-order gradients"):
        torch.autograd.grad(fn(h, basis).sum(), [h], create_graph=True)
    trainable = [w.clone() for w in weights]
    trainable[1].requires_grad_(True)
    with pytest.raises(RuntimeError, match="w.r.t. h and basis only"):
        torch.ops.mlffd.interaction_node(h, basis, *trainable, True)
    with pytest.raises(RuntimeError, match="residual needs O == C"):
        torch.ops.mlffd.interaction_node(h, basis, *weights[:3], weights[3][:1], weights[4][:1], True)
    with pytest.raises(RuntimeError, match=r"basis must be \[\(lmax\+1\)\^2, N, C\]"):
        torch.ops.mlffd.interaction_node(h, basis[:4], *weights, True)
    with pytest.raises(RuntimeError, match=r"mix must be \[lmax\+1, C, 2P\]"):
        torch.ops.mlffd.interaction_node(h, basis, weights[0][..., :-1], *weights[1:], True)
    with pytest.raises(RuntimeError, match=r"w1 must be \[H, 2C \+ \(lmax\+1\) P\]"):
        torch.ops.mlffd.interaction_node(h, basis, torch.cat([weights[0]] * 2, 2), *weights[1:], True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_edge_forces_virial_matches_reference(lib, device, dtype):
    _, _, _, centre, neighbour = random_conv_h(300, 20, 1, 0, dtype, seed=4, empty_atoms=(2, 7))
    grad, vec = random_vectors(300, dtype, seed=5), random_vectors(300, dtype, seed=6)
    graph = graph_of(*to_device(device, centre, neighbour), 22)  # 2 atoms edgeless
    out = torch.ops.mlffd.edge_forces_virial(*to_device(device, grad, vec), *graph)
    for a, b in zip(out, reference.edge_forces_virial(grad, vec, centre, neighbour, 22)):
        torch.testing.assert_close(a.cpu(), b, **tolerances(dtype))
    empty = torch.zeros(0, 3, dtype=dtype, device=device), torch.zeros(0, dtype=torch.long, device=device)
    f, v, av = torch.ops.mlffd.edge_forces_virial(empty[0], empty[0], *graph_of(empty[1], empty[1], 3))
    assert torch.all(f == 0) and torch.all(v == 0) and torch.all(av == 0) and av.shape == (3, 6)
    with pytest.raises(RuntimeError, match=r"nb_order must be \[E\]"):
        torch.ops.mlffd.edge_forces_virial(*to_device(device, grad, vec), graph[0], graph[1][:-1], graph[2])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-6), ("float32", 1e-5)])
@pytest.mark.parametrize("num_interactions, lmax, products", [(1, 2, None), (2, 2, None), (2, 1, None), (1, 4, None),
                                                               (2, 2, 20)])
def test_fused_student_matches_training_model(lib, tmp_path, device, dtype, rtol, num_interactions, lmax, products):
    """Exported model on the fused ops vs the training-time (reference) graph, float64. The radial
    tables interpolate the network to ~1e-9 of its values and ~1e-7 of its derivative (float64
    exports too); float32 adds its own rounding. lmax 4 takes the radial_spline + conv_scatter_h path."""
    from mlffd.model.student import StudentConfig, StudentPotential
    from mlffd.export.fused import FusedStudentPotential, use_fused_ops

    if lmax > 3 and device == "cuda":  # beyond the CUDA kernels: the export refuses instead
        from mlffd.errors import MLFFDError
        from mlffd.export.freeze import freeze

        with pytest.raises(MLFFDError, match="supports lmax <= 3"):
            freeze(StudentPotential(StudentConfig(elements=["Si"], lmax=lmax)), tmp_path / "m.pt", device=device)
        return
    check_fused_student(tmp_path, device, dtype, rtol, num_interactions, lmax, products)
    # in place on a StudentPotential; state_dict unchanged (the derived buffers are not in it)
    model = StudentPotential(StudentConfig(elements=["Si"], num_interactions=2, channels=4))
    keys = list(model.state_dict())
    assert use_fused_ops(model) is model and type(model) is FusedStudentPotential
    assert list(model.state_dict()) == keys and model.radial_tables.shape[:2] == (2, 1024)


def check_fused_student(tmp_path, device, dtype, rtol, num_interactions, lmax, products=None):
    from mlffd.export.load import load_frozen
    from mlffd.export.testing import make_demo_model

    kw = dict(elements=("Si", "O"), num_interactions=num_interactions, channels=8, lmax=lmax, seed=11, products=products)
    fused, _ = load_frozen(make_demo_model(tmp_path / "f.pt", use_ops=True, dtype=dtype, **kw), device)
    plain, _ = load_frozen(make_demo_model(tmp_path / "r.pt", use_ops=False, dtype="float64", **kw))
    names = ("edge_graph", "interaction_node", "edge_forces_virial") + (
        ("spline_conv",) if lmax <= 3 else ("radial_spline", "conv_scatter_h"))
    for name in names:
        assert f"mlffd.{name}" in fused.code, name
    g = torch.Generator().manual_seed(1)
    n = 40
    pos = torch.rand(n, 3, generator=g, dtype=torch.float64) * 7.0
    dist = (pos[None] - pos[:, None]).norm(dim=-1)
    i, j = ((dist < 4.5) & (dist > 0.5)).nonzero(as_tuple=True)  # some pairs beyond the cutoff (4 A)
    species = torch.randint(0, 2, (n,), generator=g)
    graph = (pos[j] - pos[i], species, torch.stack([i, j]))
    a = {key: value.cpu() for key, value in fused(*to_device(device, *graph), n - 3).items()}
    b = plain(*graph, n - 3)
    for key in ("energy", "atom_energy", "forces", "virial", "atom_virial"):
        scale = b[key].abs().max()
        torch.testing.assert_close(a[key].double(), b[key], rtol=rtol, atol=rtol * scale)


def test_radial_tables_against_the_network(lib):
    """The tables fitted at export against the float64 network they replace (max over r), and their
    effect on a fitted model's forces."""
    from mlffd.model.student import StudentConfig, StudentPotential
    from mlffd.export.fused import radial_table_error

    torch.manual_seed(0)
    model = StudentPotential(StudentConfig(elements=["Si"], num_interactions=2, channels=16, radial_hidden=32))
    err = radial_table_error(model)
    assert err["value"] < 1e-8 and err["derivative"] < 1e-6, err
    coarse = radial_table_error(model, n_intervals=64)
    assert coarse["value"] > 100 * err["value"]  # the error falls with the interval (h^4 for values)


def test_old_format_and_foreign_inputs_are_refused(lib, tmp_path):
    from mlffd.export.testing import make_demo_model
    from mlffd.export.load import load_frozen

    model, _ = load_frozen(make_demo_model(tmp_path / "m.pt", use_ops=True))
    vec, centre, neighbour = random_graph(n_nodes=10)
    with pytest.raises(Exception, match="edge_vec must be float64"):  # torch.jit.Error from TorchScript
        model(vec.float(), torch.zeros(10, dtype=torch.long), torch.stack([centre, neighbour]), 10)


# --- the CUDA kernels' code on CPU tensors (host emulation, csrc/cuda_utils.cuh) ---------------------
# One work item after another instead of thousands of threads: checks the kernels' indexing, the
# device CSR/grouping and the host code around the launches on every machine; only what a GPU adds
# (memory spaces, launch limits) is left to the `cuda` cases above.

@pytest.fixture(scope="module")
def emulated(lib):
    cuda_check.load_emulation()
    return torch.ops.mlffd_cuda_emulation


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lmax", [0, 1, 2, 3])
def test_emulated_cuda_conv_scatter_h(emulated, dtype, lmax):
    w, h, sh, centre, neighbour = random_conv_h(300, 20, 7, lmax, dtype, seed=lmax, empty_atoms=(0, 5, 19))
    inputs = [t.requires_grad_(True) for t in (w, h, sh)]
    expected = reference.conv_scatter_h(w, h, sh, centre, neighbour, lmax)
    plain = [t.detach() for t in inputs]
    torch.testing.assert_close(emulated.conv_scatter_h(*plain, centre, neighbour, lmax), expected.detach(),
                               **tolerances(dtype))
    gout = torch.randn_like(expected)
    g_radial, g_h, g_sh = emulated.conv_scatter_h_backward(gout, *plain, centre, neighbour, lmax, True)
    for a, b in zip((g_radial, g_h, g_sh), torch.autograd.grad(expected, inputs, gout)):
        torch.testing.assert_close(a, b, **tolerances(dtype))
    _, no_h, _ = emulated.conv_scatter_h_backward(gout, *plain, centre, neighbour, lmax, False)
    assert no_h.numel() == 0
    empty = random_conv_h(0, 4, 7, lmax, dtype)
    assert torch.all(emulated.conv_scatter_h(*empty[:3], empty[3], empty[4], lmax) == 0)
    bad = neighbour.clone()
    bad[0] = 20
    with pytest.raises(RuntimeError, match="neighbour must lie in"):
        emulated.conv_scatter_h(*plain, centre, bad, lmax)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_emulated_cuda_edge_graph_and_forces_virial(emulated, dtype):
    _, _, _, centre, neighbour = random_conv_h(300, 20, 1, 0, dtype, seed=4, empty_atoms=(2, 7))
    graph = emulated.edge_graph(centre, neighbour, 22)
    for a, b in zip(graph, graph_of(centre, neighbour, 22)):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="sorted ascending"):
        emulated.edge_graph(centre.flip(0), neighbour, 22)
    grad, vec = random_vectors(300, dtype, seed=5), random_vectors(300, dtype, seed=6)
    out = emulated.edge_forces_virial(grad, vec, *graph)
    for a, b in zip(out, reference.edge_forces_virial(grad, vec, centre, neighbour, 22)):
        torch.testing.assert_close(a, b, **tolerances(dtype))
    empty_vec, empty_index = torch.zeros(0, 3, dtype=dtype), torch.zeros(0, dtype=torch.long)
    f, v, av = emulated.edge_forces_virial(empty_vec, empty_vec, *graph_of(empty_index, empty_index, 3))
    assert torch.all(f == 0) and torch.all(v == 0) and torch.all(av == 0) and av.shape == (3, 6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_emulated_cuda_radial_spline(emulated, dtype):
    table = smooth_table(64, 10, dtype=dtype)
    length = (torch.rand(300, dtype=torch.float64) * 5.0).to(dtype).requires_grad_(True)
    expected = reference.radial_spline(length, table, 4.0)
    torch.testing.assert_close(emulated.radial_spline(length.detach(), table, 4.0), expected.detach(), **tolerances(dtype))
    g = torch.randn_like(expected)
    (want,) = torch.autograd.grad(expected, [length], g)
    torch.testing.assert_close(emulated.radial_spline_backward(g, length.detach(), table, 4.0), want,
                               **tolerances(dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lmax, channels", [(0, 4), (1, 3), (2, 16), (3, 5)])
def test_emulated_cuda_spline_conv(emulated, dtype, lmax, channels):
    vec, h, table, centre, neighbour, n = spline_conv_inputs(lmax, channels, dtype, seed=lmax)
    vec.requires_grad_(True)
    h.requires_grad_(True)
    graph = graph_of(centre, neighbour, n)
    expected = reference.spline_conv(vec, h, table, centre, neighbour, 4.0, lmax)
    plain = vec.detach(), h.detach()
    torch.testing.assert_close(emulated.spline_conv(*plain, table, neighbour, *graph, 4.0, lmax), expected.detach(),
                               **tolerances(dtype))
    g = torch.randn_like(expected)
    got = emulated.spline_conv_backward(g, *plain, table, neighbour, *graph, 4.0, lmax, True)
    for a, b in zip(got, torch.autograd.grad(expected, [vec, h], g)):
        tol = tolerances(dtype)
        torch.testing.assert_close(a, b, rtol=tol["rtol"], atol=tol["atol"] * max(b.abs().max().item(), 1.0))
    _, no_h = emulated.spline_conv_backward(g, *plain, table, neighbour, *graph, 4.0, lmax, False)
    assert no_h.numel() == 0


# The ops with a kernel per device that the exported student (lmax <= 3) calls; interaction_node is
# ATen calls only (no kernels of its own).
PER_DEVICE_OPS = ("edge_graph", "spline_conv", "spline_conv_backward", "edge_forces_virial")


@contextlib.contextmanager
def cuda_kernels_serving_cpu(emulated):
    """While open, mlffd's per-device ops on CPU tensors are answered by the CUDA kernels' code
    (emulated) instead of the CPU kernels; yields the names of the ops called. The CPU kernels
    are back when it closes."""
    called = []
    library = torch.library.Library("mlffd", "IMPL")

    def serve(name):
        op = getattr(emulated, name)

        def kernel(*args):
            called.append(name)
            return op(*args)

        return kernel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Overriding a previously registered kernel"
        for name in PER_DEVICE_OPS:
            library.impl(name, serve(name), "CPU")
    try:
        yield called
    finally:
        library._destroy()


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-6), ("float32", 1e-5)])
def test_exported_student_through_emulated_cuda_kernels(emulated, tmp_path, dtype, rtol):
    """The frozen student end to end (TorchScript, C++ autograd, dispatcher) with its per-device
    ops served by the CUDA kernels' code: the training model's energy, forces and virials."""
    with cuda_kernels_serving_cpu(emulated) as called:
        check_fused_student(tmp_path, "cpu", dtype, rtol, num_interactions=2, lmax=2)
    assert set(called) == set(PER_DEVICE_OPS)
    n_calls = len(called)
    torch.ops.mlffd.edge_graph(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), 1)
    assert len(called) == n_calls  # the CPU kernels are back
