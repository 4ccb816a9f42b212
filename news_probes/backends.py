"""Where a sentence-transformers encoder runs: `torch` (the model as loaded), or on the CPU an exported graph:
ONNX Runtime with the model exported once per weights (`onnx`, fp32) and, for `onnx-int8`, its linear weights
quantized to int8 with activations quantized per batch (ONNX Runtime's dynamic quantization); or OpenVINO
(`openvino`), from the same trace, computing in float32 or bfloat16 as the embedder's dtype says.

The export traces the model with the eager attention implementation, and ONNX Runtime's transformer optimizer
then fuses each layer's attention, the bias + GELU and the residual + layer norm into single kernels: the fused
attention is what makes the exported model faster than torch at all (bench/performance.py measures each step).

The export goes through torch.onnx, onnxruntime and openvino directly. sentence-transformers' own `backend="onnx"` /
`"openvino"` needs optimum-onnx / optimum-intel, whose releases require transformers older than the one this
project pins. The exported graph is the whole sentence-transformers pipeline (transformer, pooling, normalisation),
so the session returns what the torch model's `sentence_embedding` would.

Exported models are cached like the GGUF conversions (sources.conversion_cache), keyed by a digest of the weights
and of the export settings: a second embedder of the same model reuses the files, and new weights get new ones.
"""
import contextlib
import hashlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np

from news_probes.io import staged_directory
from news_probes.log import logger
from news_probes.sources import conversion_cache

OPSET = 17
# Dynamic int8 weights per output channel, in 7 bits (reduce_range): on CPUs without VNNI the 8-bit
# activation x weight products saturate their 16-bit sums, and per-tensor 8-bit weights moved embeddings most.
QUANTIZATION = {"weight_type": "QInt8", "per_channel": True, "reduce_range": True}


def weights_digest(model, settings):
    """A digest of every weight of `model` and the export settings: the cache key of its exported files."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def quiet():
    """Tracing and quantizing warn about things that do not apply here (Python branches traced as constants that
    hold for every input, "consider pre-processing"); the tests check the exported model's outputs instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def eager_attention(transformer):
    """The transformer's attention as plain matmuls while tracing: the pattern ONNX Runtime's optimizer fuses
    (the SDPA graph it does not recognise)."""
    previous = transformer.config._attn_implementation
    transformer.set_attn_implementation("eager")
    try:
        yield
    finally:
        transformer.set_attn_implementation(previous)


def export_onnx(model, input_names, path):
    """torch.onnx export (TorchScript tracing) of a float32 SentenceTransformer: inputs `input_names`, output the
    sentence embedding; batch and sequence axes dynamic."""
    import torch

    class Pipeline(torch.nn.Module):
        # transformers' forward takes other positional arguments: the traced graph is fed by keyword
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(dict(zip(input_names, tensors)))["sentence_embedding"]

    example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in input_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    with torch.no_grad(), quiet(), eager_attention(model[0].auto_model):
        torch.onnx.export(Pipeline().eval(), example, str(path), input_names=list(input_names),
                          output_names=["sentence_embedding"],
                          dynamic_axes={**axes, "sentence_embedding": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)


def optimize(source, path, config):
    """ONNX Runtime's transformer fusions (opt_level 2: no layout changes tied to this CPU)."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.optimizer import MODEL_TYPES
    model_type = config.model_type if config.model_type in MODEL_TYPES else "bert"
    with quiet():
        optimized = optimizer.optimize_model(str(source), model_type=model_type, opt_level=2,
                                             num_heads=config.num_attention_heads, hidden_size=config.hidden_size)
    optimized.save_model_to_file(str(path))


def quantize_int8(source, path):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    settings = {**QUANTIZATION, "weight_type": getattr(QuantType, QUANTIZATION["weight_type"])}
    # the fused operators are outside the ONNX domain, where shape inference cannot type their outputs
    with quiet():
        quantize_dynamic(str(source), str(path), **settings,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def exported_model(model, input_names, backend):
    """The ONNX file of `model` for `backend` (onnx or onnx-int8), exported (and quantized) on first use into
    the conversion cache; each file is written in a staging folder and renamed, so an interrupted export is never
    reused."""
    import onnxruntime
    import torch
    settings = {"inputs": list(input_names), "opset": OPSET, "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__}
    key = weights_digest(model, settings)
    folder = conversion_cache() / "onnx" / f"{key}-fp32"
    if not (folder / "model.onnx").is_file():
        logger.info(f"exporting the encoder to ONNX in {folder} (once)")
        with staged_directory(folder) as staging:
            export_onnx(model, input_names, staging / "traced.onnx")
            optimize(staging / "traced.onnx", staging / "model.onnx", model[0].auto_model.config)
            (staging / "traced.onnx").unlink()
    if backend == "onnx":
        return folder / "model.onnx"
    quantized = conversion_cache() / "onnx" / f"{key}-int8"
    if not (quantized / "model.onnx").is_file():
        logger.info(f"quantizing the ONNX encoder to int8 in {quantized} (once)")
        with staged_directory(quantized) as staging:
            quantize_int8(folder / "model.onnx", staging / "model.onnx")
    return quantized / "model.onnx"


def openvino_model(model, input_names):
    """The OpenVINO IR (model.xml) of `model`, converted on first use into the conversion cache from the same
    traced ONNX graph as the `onnx` backend, unfused (OpenVINO fuses it itself), weights kept in fp32: the precision
    it computes in is set when it is compiled (OpenVinoEncoder)."""
    import openvino
    import torch
    settings = {"inputs": list(input_names), "opset": OPSET, "torch": torch.__version__,
                "openvino": openvino.__version__}
    folder = conversion_cache() / "openvino" / f"{weights_digest(model, settings)}-fp32"
    if not (folder / "model.xml").is_file():
        logger.info(f"converting the encoder to OpenVINO in {folder} (once)")
        with staged_directory(folder) as staging:
            export_onnx(model, input_names, staging / "traced.onnx")
            with quiet():
                converted = openvino.convert_model(staging / "traced.onnx")
            openvino.save_model(converted, staging / "model.xml", compress_to_fp16=False)
            (staging / "traced.onnx").unlink()
    return folder / "model.xml"


def int64_feed(features, names):
    """The exported graph's inputs from the tokenizer's features (which may hold more, or other integer types):
    the inputs it names, as contiguous int64 arrays, the type the trace fixed."""
    return {name: np.ascontiguousarray(features[name], dtype=np.int64) for name in names}


class OpenVinoEncoder:
    """An OpenVINO CPU model compiled to compute in `dtype` (float32 or bfloat16, set explicitly: OpenVINO's own
    default turns bf16 on where the CPU has it), one stream, `threads` threads; called like OnnxEncoder."""

    PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}

    def __init__(self, path, threads, dtype):
        import openvino
        if dtype not in self.PRECISIONS:
            raise ValueError(f"the openvino backend computes in {' or '.join(self.PRECISIONS)}, not {dtype}")
        self.path = Path(path)
        self.compiled = openvino.Core().compile_model(str(path), "CPU", {
            "INFERENCE_PRECISION_HINT": self.PRECISIONS[dtype], "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads})
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]

    def __call__(self, features):
        return np.array(self.request.infer(int64_feed(features, self.input_names))[self.compiled.output(0)],
                        dtype=np.float32)


class OnnxEncoder:
    """An ONNX Runtime session over an exported encoder: `(input_ids, attention_mask[, token_type_ids])` numpy
    arrays in, one float32 embedding per row out. Threads follow torch's (set by news_probes.threads)."""

    def __init__(self, path, threads):
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3        # warnings about unused initialisers are noise here
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, features):
        return self.session.run(None, int64_feed(features, self.input_names))[0].astype(np.float32)
