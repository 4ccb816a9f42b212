"""The one precision rule (`dtype: auto`) and the hardware signature, on simulated and on real detection input."""
import contextlib
import importlib.util
import json
import subprocess
import sys

import pytest

from news_probes import hardware
from helpers import cpu_only
from news_probes.embedders import load_embedder
from news_probes.lora import LoRARegressor
from news_probes.hardware import choose_dtype, cpu_info, cpu_isa, cpu_native, signature
from news_probes.scoring import AdapterScorer, Scorer

AVX512_BF16 = {"flags": frozenset({"avx2", "avx512f", "avx512_bf16"}), "model": "AuthenticAMD family 25 model 17",
               "onednn": {"bfloat16": True, "float16": False}, "caps": ["AVX512", "ALL", "ALL"]}
AVX2 = {"flags": frozenset({"avx2", "fma"}), "model": "AuthenticAMD family 23 model 49",
        "onednn": {"bfloat16": False, "float16": False}, "caps": ["AVX2", "ALL", "ALL"]}
# An AVX512-BF16 CPU held to AVX2 by ONEDNN_MAX_CPU_ISA/MKL_ENABLE_INSTRUCTIONS: oneDNN then refuses bf16.
SWITCHED = {**AVX512_BF16, "onednn": {"bfloat16": False, "float16": False}, "caps": ["AVX512", "AVX2", "AVX2"]}
# Plain AVX-512 (no bf16 flag): oneDNN runs bf16 there, but emulated, slower than float32.
AVX512 = {**AVX512_BF16, "flags": frozenset({"avx2", "avx512f"})}


def test_flags_and_model_are_read_from_cpuinfo(tmp_path):
    first = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
             "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n")
    (tmp_path / "cpuinfo").write_text(first + first.replace(": 0", ": 1"))
    assert cpu_info(tmp_path / "cpuinfo") == ({"fpu", "avx2", "avx512f", "avx512_bf16"},
                                              "AuthenticAMD family 25 model 17")
    assert cpu_info(tmp_path / "absent") == (frozenset(), "unknown")


@pytest.mark.parametrize("probe, native, isa", [(AVX512_BF16, True, "avx512_bf16"), (AVX2, False, "avx2"),
                                                (SWITCHED, False, "avx2"), (AVX512, False, "avx512")])
def test_bf16_is_native_only_with_the_flag_and_the_math_library_using_it(probe, native, isa):
    assert cpu_native("bfloat16", probe) is native
    assert cpu_isa(probe) == isa
    assert choose_dtype("auto", "cpu", probe) == ("bfloat16" if native else "float32")
    assert signature("cpu", "float32", probe) == {"device": "cpu", "model": probe["model"], "isa": isa,
                                                  "dtype": "float32"}


def test_amx_is_named_apart_from_avx512_bf16():
    amx = {**AVX512_BF16, "flags": AVX512_BF16["flags"] | {"amx_bf16"}}
    assert cpu_isa(amx) == "amx_bf16"
    assert cpu_isa({**amx, "caps": ["AVX512", "AVX512_CORE_BF16", "ALL"]}) == "avx512_bf16"


def test_onednn_capped_below_bf16_is_not_native():
    assert not cpu_native("bfloat16", {**AVX512_BF16, "caps": ["AVX512", "AVX512_CORE", "ALL"]})
    assert cpu_native("bfloat16", {**AVX512_BF16, "caps": ["AVX512", "AVX512_CORE_BF16", "ALL"]})


@pytest.fixture
def without_native_bf16(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_probe", lambda: AVX2)


def installed_only(monkeypatch, libraries):
    real_find_spec = importlib.util.find_spec
    exporters = {library for _, library in hardware.CPU_FLOAT32_BACKENDS}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in exporters - set(libraries)
                        else real_find_spec(name, *a))


@pytest.mark.parametrize("native_bf16", [True, False])
def test_the_backend_rule_takes_an_exported_float32_graph_on_a_cpu(native_bf16, monkeypatch):
    from news_probes.hardware import choose_backend
    monkeypatch.setattr(hardware, "cpu_probe", lambda: AVX512_BF16 if native_bf16 else AVX2)
    installed_only(monkeypatch, ["openvino", "onnxruntime"])
    for dtype in ("auto", "float32"):                              # bf16, even native, failed fidelity
        assert choose_backend("auto", "cpu", dtype) == ("openvino", "float32")
    with contextlib.nullcontext() if native_bf16 else pytest.warns(RuntimeWarning, match="not native"):
        assert choose_backend("auto", "cpu", "bfloat16") == ("openvino" if native_bf16 else "torch", "bfloat16")
    assert choose_backend("torch", "cpu") == ("torch", "float32")             # explicit backends are kept
    assert choose_backend("onnx-int8", "cpu") == ("onnx-int8", "float32")
    assert choose_backend("openvino", "cpu", "bfloat16") == ("openvino", "bfloat16")
    installed_only(monkeypatch, ["onnxruntime"])
    assert choose_backend("auto", "cpu") == ("onnx", "float32")
    installed_only(monkeypatch, [])
    assert choose_backend("auto", "cpu") == ("torch", "float32")
    with pytest.raises(ValueError, match="backend must be one of"):
        choose_backend("tensorrt", "cpu")


def test_the_backend_rule_keeps_torch_on_a_gpu(monkeypatch):
    from news_probes.hardware import choose_backend
    monkeypatch.setattr(hardware, "native", lambda dtype, device, probe=None: True)
    monkeypatch.setattr(hardware, "choose_dtype", lambda dtype, device, **kw: "bfloat16" if dtype == "auto" else dtype)
    assert choose_backend("auto", "cuda") == ("torch", "bfloat16")


@cpu_only
def test_every_auto_setting_gets_float32_without_native_bf16(without_native_bf16, tiny_bert_dir, tiny_qwen_dir,
                                                            tiny_pipeline):
    for kind in ("sentence-transformers", "mean-pool"):
        embedder = load_embedder({"source": str(tiny_bert_dir), "kind": kind})     # dtype: auto by default
        assert embedder.dtype == "float32", kind
        backend = hardware.choose_backend("auto", "cpu")[0] if kind == "sentence-transformers" else "torch"
        assert embedder.hardware == {"device": "cpu", "model": AVX2["model"], "isa": "avx2", "dtype": "float32",
                                     "backend": backend}
    regressor = LoRARegressor(str(tiny_qwen_dir))                                  # finetune profile: auto
    regressor._load_base(2)
    assert regressor.dtype_ == "float32" and regressor.hardware_["isa"] == "avx2"
    # The scorers (score.py --dtype auto, the default), whatever precision the models were trained in.
    trained = tiny_pipeline[0]
    assert Scorer(trained / "probes" / "tiny" / "ridge").embedder.dtype == "float32"
    assert AdapterScorer(trained / "adapters" / "tiny").regressor.dtype_ == "float32"


def test_explicit_bfloat16_without_native_bf16_runs_and_warns_how_much_slower(without_native_bf16, tiny_bert_dir):
    with pytest.warns(RuntimeWarning, match=r"bfloat16 is not native on this cpu \(avx2\): it is emulated, "
                                            r"a matmul measured [\d.]+x slower than float32"):
        embedder = load_embedder({"source": str(tiny_bert_dir), "dtype": "bfloat16"})
    assert embedder.dtype == "bfloat16" and embedder.encode(["clinic water"], show_progress=False).shape == (1, 32)
    with pytest.warns(RuntimeWarning, match="finetune dtype: bfloat16 is not native"):
        assert choose_dtype("bfloat16", "cpu", field="finetune dtype") == "bfloat16"
    with pytest.raises(ValueError, match="dtype must be one of"):
        choose_dtype("int8", "cpu")


def test_real_detection_follows_the_instruction_set_switches():
    """On any x86 machine: held to AVX2, the math library runs no native bf16, so auto is float32."""
    code = ("import json; from news_probes import hardware; print(json.dumps([hardware.choose_dtype('auto', 'cpu'), "
            "hardware.signature('cpu', 'float32')]))")
    env = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    dtype, sig = json.loads(out)
    assert dtype == "float32" and sig["isa"] in ("avx2", "default")
