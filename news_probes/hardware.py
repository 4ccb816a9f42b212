"""The machine a run computes on: the one rule behind every `dtype: auto`, and the hardware signature that is
recorded beside the metrics.

Reduced precision pays only where the device computes it natively: CUDA GPUs with bf16 support, x86 CPUs with
AVX512-BF16 or AMX-BF16. Elsewhere PyTorch emulates bf16 and it runs far slower than float32. The CPU answer
is read from the math library itself (oneDNN, which runs torch's bf16 matmuls), not only from /proc/cpuinfo:
oneDNN follows `ONEDNN_MAX_CPU_ISA`, so a machine held to AVX2 with it gets float32 like a real AVX2 CPU.

The signature (device, CPU model, instruction set, precision) tells two runs' numbers apart: equal signatures
must give equal metrics; different ones may differ within the measured tolerances (.ci/tolerances.yaml).
"""
import os
import re
import time
import warnings
from functools import lru_cache
from pathlib import Path

DTYPES = ("auto", "float32", "bfloat16", "float16")
MIXED_DTYPES = ("auto", "float32", "bfloat16")    # the adapter's: bf16 autocast over fp32 weights, or none
BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino")     # of a sentence-transformers encoder (news_probes.backends)
# The CPU flags of native reduced-precision matmuls, per dtype.
NATIVE_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}
LEVELS = ("default", "avx2", "avx512")


def cpu_info(cpuinfo="/proc/cpuinfo"):
    """(feature flags, model) of the first CPU in /proc/cpuinfo; the model as 'vendor family F model M', which
    tells CPU generations apart where the model name does not (virtual machines often say just 'AMD EPYC')."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset(), "unknown"
    fields = dict(re.findall(r"^([^\t:\n]+?)\s*:\s?(.*)$", text.split("\n\n")[0], re.MULTILINE))
    model = f"{fields.get('vendor_id', 'unknown')} family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
    return frozenset(fields.get("flags", "").split()), model


def level_of(name):
    """An instruction-set name (ATen's capability, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS) as a level."""
    name = (name or "").upper()
    if name.startswith(("AVX512", "AVX10", "ALL")):
        return "avx512"
    if name.startswith("AVX2"):
        return "avx2"
    return "default"


@lru_cache(maxsize=None)
def cpu_probe():
    """What the detection rests on, read once per process: the CPU flags and model, whether oneDNN will run
    bf16/fp16 matmuls (it answers after applying ONEDNN_MAX_CPU_ISA), and the instruction-set caps in force
    (ATen's capability, which follows ATEN_CPU_CAPABILITY, then the oneDNN and MKL switches)."""
    import torch
    mkldnn = torch.ops.mkldnn
    flags, model = cpu_info()
    return {
        "flags": flags, "model": model,
        "onednn": {"bfloat16": bool(mkldnn._is_mkldnn_bf16_supported()),
                   "float16": bool(mkldnn._is_mkldnn_fp16_supported())},
        "caps": [torch.backends.cpu.get_cpu_capability(), os.environ.get("ONEDNN_MAX_CPU_ISA") or "ALL",
                 os.environ.get("MKL_ENABLE_INSTRUCTIONS") or "ALL"],
    }


def cpu_native(dtype, probe):
    """True when this CPU multiplies `dtype` in hardware: the flag is there and oneDNN, under its caps, uses it.
    (oneDNN alone also says yes on plain AVX-512, which has no bf16 instructions: it converts in software.)"""
    onednn_cap = probe["caps"][1].upper()
    capped = onednn_cap != "ALL" and not any(k in onednn_cap for k in ("BF16", "FP16", "AMX", "AVX10"))
    has_flag = any(flag in probe["flags"] for flag in NATIVE_FLAGS[dtype])
    return has_flag and probe["onednn"][dtype] and not capped


def cpu_isa(probe):
    """The instruction set the CPU math runs with: the lowest of ATen's capability and the oneDNN/MKL caps,
    suffixed with _bf16 where bf16 is native ('amx_bf16', 'avx512_bf16', 'avx512', 'avx2', 'default'); AMX
    tiles compute bf16 with other kernels than AVX512-BF16, hence their own name."""
    level = min((level_of(cap) for cap in probe["caps"]), key=LEVELS.index)
    if not cpu_native("bfloat16", probe):
        return level
    onednn_cap = probe["caps"][1].upper()
    amx = "amx_bf16" in probe["flags"] and (onednn_cap == "ALL" or "AMX" in onednn_cap)
    return "amx_bf16" if amx else level + "_bf16"


def native(dtype, device, probe=None):
    """Whether `device` computes `dtype` natively (float32 always does)."""
    if dtype == "float32":
        return True
    import torch
    if device.startswith("cuda"):
        return torch.cuda.is_available() and (dtype == "float16" or torch.cuda.is_bf16_supported())
    return cpu_native(dtype, probe or cpu_probe())


def choose_dtype(dtype, device, probe=None, field="dtype"):
    """The dtype name a model runs in on `device`. `auto` is bfloat16 where that is native, float32 elsewhere;
    an explicit reduced precision is honoured, with a warning (and the measured slowdown) where it is emulated."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    if dtype == "auto":
        return "bfloat16" if native("bfloat16", device, probe) else "float32"
    if not native(dtype, device, probe):
        cost = (f"a matmul measured {emulation_slowdown(dtype):.1f}x slower than float32 here just now"
                if device == "cpu" else "expect it to be slower than float32")
        warnings.warn(f"{field}: {dtype} is not native on this {device} ({signature(device, dtype, probe)['isa']}): "
                      f"it is emulated, {cost}; use dtype: auto", RuntimeWarning, stacklevel=2)
    return dtype


def emulation_slowdown(dtype, n=256):
    """How many times slower a square matmul runs in `dtype` than in float32 on this CPU, measured now."""
    import torch

    def seconds(torch_dtype):
        a = torch.randn(n, n).to(torch_dtype)
        a @ a
        start = time.perf_counter()
        a @ a
        return time.perf_counter() - start

    return seconds(getattr(torch, dtype)) / max(seconds(torch.float32), 1e-9)


# The exported float32 graphs `backend: auto` takes on a CPU, fastest first where both were measured, each with
# the library it needs (news_probes.backends).
CPU_FLOAT32_BACKENDS = (("openvino", "openvino"), ("onnx", "onnxruntime"))


def choose_backend(backend, device, dtype="auto"):
    """(backend, dtype): where a sentence-transformers encoder runs (news_probes.backends) and the precision it
    computes in, from its `backend` and `dtype` settings. `auto` is the fastest setting that passed
    bench/performance.py's fidelity test on the sample and on ELLIPSE (docs/hardware.md has the
    tables): on a CPU, with dtype auto or float32, an exported float32 graph (CPU_FLOAT32_BACKENDS, the first whose
    library is installed; their embeddings equal torch's to float rounding); bf16 where it is native was faster
    but moved the LightGBM probe beyond its seed spread on the sample, so on a CPU an encoder's `dtype: auto` is
    float32. An explicit bfloat16 runs in OpenVINO where it is native and installed (faster than torch's bf16 and
    closer to float32), in torch elsewhere. GPUs: torch, choose_dtype's precision. int8 (`onnx-int8`) is never
    chosen: faster still, it moved the probes' MAE beyond the bounds."""
    import importlib.util
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend.startswith("onnx"):
        return backend, "float32"
    if device != "cpu":
        return backend if backend != "auto" else "torch", choose_dtype(dtype, device)
    dtype = "float32" if dtype == "auto" else choose_dtype(dtype, device)    # an explicit one may be emulated
    if backend != "auto":
        return backend, dtype
    installed = [name for name, library in CPU_FLOAT32_BACKENDS if importlib.util.find_spec(library) is not None]
    if dtype == "float32":
        return (installed[0], dtype) if installed else ("torch", dtype)
    if dtype == "bfloat16" and "openvino" in installed and native(dtype, device):
        return "openvino", dtype
    return "torch", dtype


def choose_device(device="auto"):
    import torch
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def signature(device, dtype, probe=None):
    """{device, model, isa, dtype}: what a run's numbers depend on besides code, data and params. The model is
    there because two CPU generations with the same instruction set gave different bf16 embeddings, while one
    machine gives bit-identical ones run after run."""
    if device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            return {"device": "cuda", "model": "unavailable", "isa": "unavailable", "dtype": dtype}
        major, minor = torch.cuda.get_device_capability(device)
        return {"device": "cuda", "model": torch.cuda.get_device_name(device), "isa": f"sm_{major}{minor}",
                "dtype": dtype}
    probe = probe or cpu_probe()
    return {"device": "cpu", "model": probe["model"], "isa": cpu_isa(probe), "dtype": dtype}
