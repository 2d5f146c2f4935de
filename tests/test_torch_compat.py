"""compat.torch_compat against the installed torch and against fakes of other torch generations."""

import json
import pickle
import types

import numpy as np
import pytest
import torch

from compat import torch_compat as tc

# ---------------------------------------------------------------------------- fakes


def _fake_cuda(devices, arch_list, kernel_error=None):
    """A fake `torch.cuda` with `devices` = [(name, (major, minor), props)]."""
    return types.SimpleNamespace(
        is_available=lambda: bool(devices),
        device_count=lambda: len(devices),
        get_device_name=lambda i: devices[i][0],
        get_device_capability=lambda i: devices[i][1],
        get_device_properties=lambda i: devices[i][2],
        get_arch_list=lambda: list(arch_list),
    )


def _fake_torch(cuda, *, load=None, plateau=None, kernel_error=None, version="2.9.0+cu126"):
    def ones(n, device=None):
        if kernel_error is not None:
            raise RuntimeError(kernel_error)
        return torch.ones(n)

    return types.SimpleNamespace(
        __version__=version,
        version=types.SimpleNamespace(cuda="12.6"),
        cuda=cuda,
        load=load or torch.load,
        ones=ones,
        optim=types.SimpleNamespace(
            lr_scheduler=types.SimpleNamespace(ReduceLROnPlateau=plateau)
        ),
    )


T4_PROPS = types.SimpleNamespace(total_memory=15_828_320_256)
ARCH_70_90 = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


@pytest.fixture
def fake(monkeypatch):
    """Install a fake torch into compat.torch_compat: fake(cuda=..., load=..., ...)."""

    def install(devices=(), arch_list=(), **kw):
        ft = _fake_torch(_fake_cuda(list(devices), arch_list), **kw)
        monkeypatch.setattr(tc, "torch", ft)
        return ft

    return install


# ---------------------------------------------------------------------------- torch_load


class _Cfg:
    """A non-tensor object that weights_only=True refuses to unpickle."""

    def __init__(self, lr):
        self.lr = lr


class _Marker:
    """Unpickling it writes a file: the crafted checkpoint a weights-only load must not run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('ran')",))


def test_torch_load_reads_numpy_rng_state_and_scalars_weights_only(tmp_path):
    """Older checkpoints of ours hold numpy scalars and a numpy RNG state: they still load."""
    path = tmp_path / "ckpt.pth"
    state = {"model": {"w": torch.arange(3.0)}, "best": np.float64(0.25), "n": np.int64(3),
             "rng": np.random.get_state()}
    torch.save(state, path)
    loaded = tc.torch_load(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert loaded["best"] == 0.25 and loaded["n"] == 3
    assert np.array_equal(loaded["rng"][1], state["rng"][1])


class _NumpyObjectDtype:
    def __reduce__(self):
        return (np.dtype, ("O",))


class _FloatDtypeWithObjectField:
    """A float64 dtype whose pickled state adds an object field and clears the object flag."""

    def __reduce__(self):
        return (np.dtype, ("f8", False, True),
                (3, "|", None, ("a",), {"a": (_NumpyObjectDtype(), 0)}, 8, 1, 0))


class _ArrayOfForgedPointers:
    """An array of that dtype: numpy would read its bytes 0x4141... as an object pointer."""

    def __reduce__(self):
        from numpy._core import multiarray
        return (multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                (1, (1,), _FloatDtypeWithObjectField(), False, b"A" * 8))


@pytest.mark.parametrize("payload", [
    _ArrayOfForgedPointers(),
    _FloatDtypeWithObjectField(),
    np.zeros(2, dtype=[("a", "f4")]),  # structured
    np.array([None, 1], dtype=object),
])
def test_torch_load_refuses_numpy_beyond_plain_numbers(tmp_path, payload):
    """numpy's own dtype unpickling takes fields and flags from the file: a weights-only load
    must never hand them over (reading the forged array's field crashes the interpreter)."""
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "config": {"model": payload}}, path)
    with pytest.raises(tc.UnsafeCheckpointError):
        tc.torch_load(path)


def test_torch_load_rebuilds_plain_numpy_values_faithfully(tmp_path):
    path = tmp_path / "ckpt.pth"
    values = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3),
              "fortran": np.asfortranarray(np.arange(6, dtype=">i4").reshape(2, 3)),
              "bool": np.array([True, False]),
              "c": np.complex64(1 + 2j), "u8": np.uint8(7), "dtype": np.dtype("<u2")}
    torch.save({"v": values, "t": (values["f32"], 1)}, path)
    got = tc.torch_load(path)["v"]
    for key, want in values.items():
        if isinstance(want, np.ndarray):
            assert got[key].dtype == want.dtype and np.array_equal(got[key], want), key
        else:
            assert type(got[key]) is type(want) and got[key] == want, key


def test_torch_load_refuses_objects_unless_trusted(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.arange(3.0)}, "cfg": _Cfg(1e-3)}, path)
    with pytest.raises(tc.UnsafeCheckpointError, match="_Cfg"):
        tc.torch_load(path)
    assert tc.torch_load(path, trusted=True)["cfg"].lr == 1e-3
    assert tc.torch_load(path, safe_globals=[_Cfg])["cfg"].lr == 1e-3  # vouched for


@pytest.mark.parametrize("zipped", [True, False])  # False: torch's legacy (pre-1.6) format
def test_crafted_pickle_does_not_run(tmp_path, zipped):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    payload = {"model": {"w": torch.zeros(1)}, "x": _Marker(marker)}
    torch.save(payload, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(pickle.UnpicklingError):
        tc.torch_load(path)
    assert not marker.exists()
    tc.torch_load(path, trusted=True)  # the explicit opt-in does unpickle fully
    assert marker.read_text() == "ran"


def test_torch_load_new_torch_uses_safe_globals_context(fake):
    calls, entered = [], []

    def load(f, map_location=None, pickle_module=None, *, weights_only=None, **pickle_args):
        calls.append((f, map_location, weights_only, pickle_args, list(entered)))
        return "ok"

    class _Ctx:
        def __init__(self, allowed):
            self.allowed = allowed

        def __enter__(self):
            entered.append(len(self.allowed))

        def __exit__(self, *exc):
            entered.pop()

    ft = fake(load=load)
    ft.serialization = types.SimpleNamespace(safe_globals=_Ctx)
    assert tc.torch_load("x.pth", map_location="cuda:1") == "ok"
    (f, loc, weights_only, extra, ctx), = calls
    assert (f, loc, weights_only, extra) == ("x.pth", "cuda:1", True, {}) and ctx and ctx[0] > 4
    assert entered == []  # the allowlist is scoped to the call
    calls.clear()
    assert tc.torch_load("x.pth", trusted=True) == "ok"
    assert calls[0][2] is False


def test_torch_load_torch_2_4_adds_safe_globals(fake):
    added, calls = [], []

    def load(f, map_location=None, pickle_module=None, *, weights_only=None, **pickle_args):
        calls.append(weights_only)
        return "ok"

    ft = fake(load=load, version="2.4.1")
    ft.serialization = types.SimpleNamespace(add_safe_globals=added.extend)
    assert tc.torch_load("x.pth") == "ok"
    assert calls == [True]
    assert added == []  # numpy objects only through the stand-ins (torch >= 2.6)
    assert tc.torch_load("x.pth", safe_globals=[_Cfg]) == "ok"
    assert added == [_Cfg]


def test_torch_load_torch_2_1_has_no_allowlist(fake):
    calls = []

    def load(f, map_location=None, pickle_module=None, *, weights_only=False, **pickle_args):
        calls.append(weights_only)
        return "ok"

    fake(load=load, version="2.1.2")  # no torch.serialization.safe_globals/add_safe_globals
    assert tc.torch_load("x.pth") == "ok"
    assert calls == [True]


def test_torch_load_without_weights_only_refuses_unless_trusted(fake):
    calls = []

    def load(f, map_location=None, pickle_module=None, **pickle_load_args):
        # old torch forwards unknown kwargs to pickle, which would choke on weights_only
        calls.append(pickle_load_args)
        return "old"

    fake(load=load, version="1.12.1")
    with pytest.raises(tc.UnsafeCheckpointError, match="cannot load a file without"):
        tc.torch_load("x.pth")
    assert calls == []
    assert tc.torch_load("x.pth", trusted=True) == "old"
    assert calls == [{}]


# ---------------------------------------------------------------------------- gpu_total_memory


def test_gpu_total_memory_reads_total_memory(fake):
    fake(devices=[("Tesla T4", (7, 5), T4_PROPS)], arch_list=ARCH_70_90)
    assert tc.gpu_total_memory(0) == 15_828_320_256


def test_gpu_total_memory_falls_back_to_total_mem(fake):
    props = types.SimpleNamespace(total_mem=17_071_734_784)
    fake(devices=[("Tesla P100-PCIE-16GB", (6, 0), props)], arch_list=ARCH_70_90)
    assert tc.gpu_total_memory() == 17_071_734_784


def test_gpu_total_memory_errors(fake):
    fake(devices=[("Odd", (7, 5), types.SimpleNamespace())])
    with pytest.raises(RuntimeError, match="neither 'total_memory' nor 'total_mem'"):
        tc.gpu_total_memory(0)
    with pytest.raises(ValueError, match="GPU index 3 out of range \\(1 visible\\)"):
        tc.gpu_total_memory(3)
    fake(devices=[])
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        tc.gpu_total_memory()


def test_gpu_total_memory_real_torch_without_gpu():
    if torch.cuda.is_available():
        assert tc.gpu_total_memory(0) > 0
    else:
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            tc.gpu_total_memory(0)


# ---------------------------------------------------------------------------- plateau scheduler


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)


def test_plateau_scheduler_real_torch_drops_verbose_and_reduces_lr():
    opt = _optimizer()
    sched = tc.make_plateau_scheduler(opt, factor=0.5, patience=1, verbose=False)
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert sched.mode == "min"
    for loss in (1.0, 1.0, 1.0):  # no improvement for patience+1 steps halves the lr
        sched.step(loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_plateau_scheduler_keeps_typos_loud():
    with pytest.raises(TypeError, match="patiance"):
        tc.make_plateau_scheduler(_optimizer(), patiance=3)


def _recording_plateau(verbose_default):
    seen = {}

    if verbose_default is None:

        class Plateau:
            def __init__(self, optimizer, mode="min", factor=0.1, patience=10):
                seen.update(mode=mode, factor=factor, patience=patience)

    else:

        class Plateau:
            def __init__(self, optimizer, mode="min", factor=0.1, patience=10,
                         verbose=verbose_default):
                seen.update(mode=mode, factor=factor, patience=patience, verbose=verbose)

    return Plateau, seen


@pytest.mark.parametrize(
    "verbose_default, expect_verbose",
    [(False, True), ("deprecated", "deprecated"), (None, None)],
    ids=["torch<2.2 has verbose", "torch 2.2-2.6 deprecated", "torch>=2.7 removed"],
)
def test_plateau_scheduler_across_torch_generations(fake, verbose_default, expect_verbose):
    plateau, seen = _recording_plateau(verbose_default)
    fake(plateau=plateau)
    tc.make_plateau_scheduler(object(), factor=0.3, patience=2, verbose=True)
    assert seen["mode"] == "min" and seen["factor"] == 0.3 and seen["patience"] == 2
    # "deprecated"/None: the fake saw its own default, i.e. verbose was not passed
    assert seen.get("verbose") == expect_verbose


# ---------------------------------------------------------------------------- check_gpu_supported


def test_check_gpu_supported_real_torch():
    desc = tc.check_gpu_supported()
    if not torch.cuda.is_available():
        assert desc == "cpu (no GPU visible)"
    else:
        assert desc.startswith("cuda:0 ")


def test_check_gpu_supported_no_gpu(fake):
    fake(devices=[], arch_list=ARCH_70_90)
    assert tc.check_gpu_supported() == "cpu (no GPU visible)"


def test_check_gpu_supported_rejects_p100_on_sm70_build(fake):
    props = types.SimpleNamespace(total_memory=17_071_734_784)
    fake(devices=[("Tesla P100-PCIE-16GB", (6, 0), props)], arch_list=ARCH_70_90,
         version="2.6.0+cu124")
    with pytest.raises(RuntimeError) as info:
        tc.check_gpu_supported()
    assert str(info.value) == (
        "Tesla P100-PCIE-16GB is sm_60 but this torch 2.6.0+cu124 was built for sm_70..sm_90: "
        "choose the T4 accelerator (NvidiaTeslaT4) in the notebook settings"
    )


def test_check_gpu_supported_accepts_two_t4(fake):
    fake(devices=[("Tesla T4", (7, 5), T4_PROPS)] * 2, arch_list=ARCH_70_90)
    assert tc.check_gpu_supported() == (
        "cuda:0 Tesla T4 (sm_75, 14.7 GiB); cuda:1 Tesla T4 (sm_75, 14.7 GiB)"
    )


def test_check_gpu_supported_same_major_binary_compat(fake):
    # an sm_80 cubin runs on sm_86/sm_89; it does not run on sm_75 (different major)
    fake(devices=[("L4", (8, 9), T4_PROPS)], arch_list=["sm_80"])
    assert "L4 (sm_89" in tc.check_gpu_supported()
    fake(devices=[("Tesla T4", (7, 5), T4_PROPS)], arch_list=["sm_80", "sm_90"])
    with pytest.raises(RuntimeError, match="Tesla T4 is sm_75 .* built for sm_80..sm_90"):
        tc.check_gpu_supported()


def test_check_gpu_supported_ptx_forward_compat(fake):
    # no sm_100 cubin, but PTX for compute_90 is JIT-compiled on the newer GPU
    fake(devices=[("B200", (10, 0), T4_PROPS)], arch_list=["sm_80", "sm_90", "compute_90"])
    assert tc.check_gpu_supported().startswith("cuda:0 B200 (sm_100")
    # PTX does not run backwards on an older GPU
    fake(devices=[("Tesla P100", (6, 0), T4_PROPS)], arch_list=["compute_70"])
    with pytest.raises(RuntimeError, match="built for PTX compute_70"):
        tc.check_gpu_supported()


def test_check_gpu_supported_arch_specific_variant_is_exact(fake):
    fake(devices=[("H100", (9, 0), T4_PROPS)], arch_list=["sm_90a"])
    assert "H100" in tc.check_gpu_supported()
    fake(devices=[("RTX", (12, 0), T4_PROPS)], arch_list=["sm_90a"])
    with pytest.raises(RuntimeError, match="RTX is sm_120"):
        tc.check_gpu_supported()


def test_check_gpu_supported_probe_failure_is_explained(fake):
    fake(devices=[("Tesla T4", (7, 5), T4_PROPS)], arch_list=[],
         kernel_error="CUDA error: no kernel image is available for execution on the device")
    with pytest.raises(RuntimeError, match="Tesla T4 \\(sm_75\\) cannot run .*no kernel image.*T4"):
        tc.check_gpu_supported()
    assert tc.check_gpu_supported(probe=False).startswith("cuda:0 Tesla T4")


def test_arch_parsing():
    assert tc._parse_arch("sm_86") == ("sm", 8, 6, "")
    assert tc._parse_arch("sm_120") == ("sm", 12, 0, "")
    assert tc._parse_arch("compute_90") == ("compute", 9, 0, "")
    assert tc._parse_arch("sm_90a") == ("sm", 9, 0, "a")
    assert tc._parse_arch("gfx90a") is None


# ---------------------------------------------------------------------------- environment


def test_environment_report_real(tmp_path):
    report = tc.environment_report(tmp_path)
    json.dumps(report)  # goes into the summary JSON as is
    assert report["torch"] == torch.__version__
    assert report["numpy"] == np.__version__
    assert report["pesq"] and report["pystoi"] and report["soundfile"]
    assert report["disk_free"] > 0 and report["cpu_count"] >= 1
    text = tc.format_environment(report)
    assert f"torch {torch.__version__}" in text
    if not torch.cuda.is_available():
        assert report["gpus"] == [] and "GPU: none visible" in text


def test_environment_report_with_gpus(fake, tmp_path):
    props = types.SimpleNamespace(total_mem=17_071_734_784)
    fake(devices=[("Tesla T4", (7, 5), T4_PROPS), ("Tesla P100", (6, 0), props)])
    report = tc.environment_report(tmp_path)
    assert report["gpus"] == [
        {"index": 0, "name": "Tesla T4", "capability": "sm_75", "total_memory": 15_828_320_256},
        {"index": 1, "name": "Tesla P100", "capability": "sm_60", "total_memory": 17_071_734_784},
    ]
    assert report["cuda"] == "12.6"
    text = tc.format_environment(report)
    assert "GPU 0: Tesla T4 (sm_75, 14.7 GiB)" in text
    assert "GPU 1: Tesla P100 (sm_60, 15.9 GiB)" in text


def test_format_environment_marks_missing_torchaudio():
    text = tc.format_environment({"python": "3.11", "torch": "2.13", "torchaudio": None})
    assert "torchaudio missing" in text


# ---------------------------------------------------------------------------- run_without_cuda_init


def _report_pid(tag):
    import os

    return tag, os.getpid()


def _raise_p100():
    raise RuntimeError("Tesla P100-PCIE-16GB is sm_60")


def test_run_without_cuda_init_runs_in_process_without_gpu(fake):
    import os

    fake(devices=[], arch_list=ARCH_70_90)
    assert tc.run_without_cuda_init(_report_pid, "x") == ("x", os.getpid())


def test_run_without_cuda_init_forks_when_a_gpu_is_visible(monkeypatch):
    import os

    # A visible GPU and an uninitialised CUDA: the call must leave this process (forked child).
    monkeypatch.setattr(tc, "cuda_device_count", lambda: 2)
    tag, pid = tc.run_without_cuda_init(_report_pid, "env")
    assert tag == "env" and pid != os.getpid()
    with pytest.raises(RuntimeError, match="sm_60"):
        tc.run_without_cuda_init(_raise_p100)


def test_run_without_cuda_init_stays_in_process_once_cuda_is_initialised(monkeypatch):
    import os

    monkeypatch.setattr(tc, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(tc.torch.cuda, "is_initialized", lambda: True)
    assert tc.run_without_cuda_init(_report_pid, "y") == ("y", os.getpid())


def test_run_without_cuda_init_never_calls_is_available_in_the_parent(monkeypatch):
    import os

    # torch.cuda.is_available() runs cudaGetDeviceCount -> cuInit, which poisons every later fork
    # (the DDP workers then die with "CUDA error: initialization error") while
    # torch.cuda.is_initialized() still says False. The guard itself must count GPUs via
    # device_count() (NVML first), never via is_available().
    def poisoned():
        raise AssertionError("is_available() called in the parent: forks are poisoned")

    cuda = _fake_cuda([("Tesla T4", (7, 5), T4_PROPS)] * 2, ARCH_70_90)
    cuda.is_available = poisoned
    cuda.is_initialized = lambda: False
    monkeypatch.setattr(tc, "torch", _fake_torch(cuda))
    assert tc.cuda_device_count() == 2
    tag, pid = tc.run_without_cuda_init(_report_pid, "t4x2")
    assert tag == "t4x2" and pid != os.getpid()


def test_gpu_count_survives_a_cuda_build_without_driver(fake):
    ft = fake(devices=[], arch_list=ARCH_70_90)

    def no_driver():
        raise RuntimeError("Found no NVIDIA driver on your system")

    ft.cuda.device_count = no_driver
    assert tc.cuda_device_count() == 0
    assert tc.check_gpu_supported() == "cpu (no GPU visible)"


def test_require_gpu_refuses_a_full_cpu_run_naming_the_causes():
    from compat.torch_compat import NoGPUError, require_gpu

    with pytest.raises(NoGPUError) as info:
        require_gpu(smoke=False, allow_cpu=False, count=0)
    message = str(info.value)
    for cause in ("accelerator is off", "GPU quota", "phone-verified", "retired accelerator"):
        assert cause in message
    assert "ALLOW_CPU = True" in message
    assert "ALLOW_CPU=True" in require_gpu(allow_cpu=True, count=0)
    assert "smoke run" in require_gpu(smoke=True, count=0)
    assert require_gpu(count=2) == "GPU check: 2 CUDA device(s)"
