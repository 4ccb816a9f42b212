"""Shared fixtures: small datasets in both record shapes, default params, and tiny models built on the spot."""
import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORDS = ("clinic water school housing court peace farm river vaccine loan teacher council forest rights "
         "market harbour nurse bridge harvest library wage tenant solar flood").split()
DIMENSIONS = ["wellbeing", "cohesion", "justice"]
# What a throw-away copy of the repository needs to run the pipeline.
PROJECT_FILES = ["dvc.yaml", "params.yaml", "stages", ".dvc/config", ".dvcignore", ".gitignore", "Makefile"]


def sh(cmd, cwd, env, check=True):
    """Run a shell command; with check, fail the test with its output when it exits non-zero."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=True)
    if check:
        assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr
    return result


def isolated_env(root):
    """Environment for DVC and git in a temp tree: HOME (hence the default remote `~/...`) lies under root."""
    home = Path(root) / "home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "HOME": str(home), "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(Path(root) / "site"),
            "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global"), "DVC_SYSTEM_CONFIG_DIR": str(home / "dvc-system"),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def tiny_finetune_profile(qwen_dir, **overrides):
    """A finetune profile for the tiny Qwen2 of `tiny_qwen_dir`: a few LoRA steps in seconds."""
    return {"source": str(qwen_dir), "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"],
            "max_tokens": 32, "truncation": "head+tail", "epochs": 2, "batch_size": 16, "lr": 0.005,
            "warmup_steps": 1, **overrides}


def make_project(work, env, qwen_dir, records=80):
    """A git repository holding the pipeline, fast probe settings, the tiny Qwen2 as finetune profiles `tiny`
    (the default) and `tiny-b`, and `records` generated articles."""
    work = Path(work)
    for name in PROJECT_FILES:
        src, dst = REPO / name, work / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    shutil.rmtree(work / "stages" / "__pycache__", ignore_errors=True)
    (work / "data").mkdir()
    write_lines(work / "data" / "raw.jsonl", make_records(records))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["raw"] = "data/raw.jsonl"
    params["probes"]["mlp"].update(epochs=30, patience=5)
    params["probes"]["lightgbm"].update(n_estimators=60, early_stopping_rounds=10)
    params["finetune"]["profiles"].update(tiny=tiny_finetune_profile(qwen_dir),
                                          **{"tiny-b": tiny_finetune_profile(qwen_dir, r=2, epochs=1)})
    params["finetune"]["profile"] = "tiny"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git init -q -b main && git add -A && git commit -qm init", work, env)
    return work


def write_lines(path, rows):
    """Write JSONL; a str row is written as it is (for malformed-input tests)."""
    path = Path(path)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def make_records(n, shape="study", seed=0, dimensions=DIMENSIONS):
    """Records whose scores depend on which words the text uses, so probes have something to learn."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(-1, 1, size=(len(WORDS), len(dimensions)))
    rows = []
    for i in range(n):
        counts = rng.poisson(1.0, size=len(WORDS))
        text = " ".join(w for w, c in zip(WORDS, counts) for _ in range(c)) or WORDS[i % len(WORDS)]
        labels = np.clip(5 + counts @ weights, 0, 10).round(1).tolist()
        if shape == "study":
            rows.append({"id": f"r{i}", "title": f"Story {i}", "content": text, "language": "en",
                         "labels": labels, "dimension_names": list(dimensions)})
        else:
            rows.append({"id": f"r{i}", "title": "", "text": text, "scores": dict(zip(dimensions, labels))})
    return rows


@pytest.fixture
def shared_datasets():
    """The public datasets beside the repository (../shared/datasets, or $SHARED_DATASETS); users lack them."""
    return Path(os.environ.get("SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture
def default_params():
    """The repository's params.yaml, as a fresh dict a test may change."""
    return copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))


def _tiny_vocab(directory):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "query", ":", "story", "##s"] + WORDS
    vocab += [str(i) for i in range(100)]
    path = Path(directory) / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return path, len(vocab)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A 2-layer BERT saved in sentence-transformers format (mean pooling), random weights."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast
    directory = tmp_path_factory.mktemp("tiny-bert")
    hf_dir = directory / "hf"
    hf_dir.mkdir()
    vocab_path, vocab_size = _tiny_vocab(hf_dir)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(hf_dir)
    # `vocab=`: transformers 5 ignores `vocab_file=` and would map every word to [UNK].
    BertTokenizerFast(vocab=str(vocab_path)).save_pretrained(hf_dir)
    body = models.Transformer(str(hf_dir), max_seq_length=64)
    pooling = models.Pooling(body.get_embedding_dimension(), pooling_mode="mean")
    out = directory / "st"
    SentenceTransformer(modules=[body, pooling]).save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory):
    """A 2-layer Qwen2 causal LM with random weights and a real Qwen2Tokenizer (byte-level BPE) whose vocabulary
    is the 256 byte symbols and no merges: one token per character, built offline. (AutoTokenizer loads any
    tokenizer in a qwen2 folder as Qwen2Tokenizer, so a word-piece vocabulary would tokenise to nothing.)"""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer
    directory = tmp_path_factory.mktemp("tiny-qwen")
    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory, tiny_bert_dir, tiny_qwen_dir):
    """prepare -> embed -> probe and finetune, the stages' own functions, on 120 generated articles with the tiny
    BERT as model `tiny` and the tiny Qwen2 as finetune profile `tiny`. Returns (root, params); root holds
    prepared/, emb/tiny/, meta/tiny.json, probes/tiny/, fit/tiny.json, adapters/tiny/, live/ (DVCLive),
    data.json. Tests write their own outputs elsewhere."""
    from embed import embed
    from finetune import finetune
    from prepare import prepare
    from probe import fit_probes
    root = tmp_path_factory.mktemp("tiny-pipeline")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["embedders"]["tiny"] = {"source": str(tiny_bert_dir), "max_tokens": 32, "batch_size": 16}
    params.update(models=["tiny"], probes={"ridge": {}, "mlp": {"hidden": [16], "epochs": 20},
                                           "lightgbm": {"n_estimators": 30}})
    params["finetune"] = {"profile": "tiny", "profiles": {"tiny": tiny_finetune_profile(tiny_qwen_dir, eval_steps=3)}}
    prepare(write_lines(root / "raw.jsonl", make_records(120)), root / "prepared", root / "data.json", params)
    embed("tiny", root / "prepared", root / "emb" / "tiny", root / "meta" / "tiny.json", params)
    fit_probes("tiny", root / "prepared", root / "emb" / "tiny", root / "probes" / "tiny", root / "fit" / "tiny.json",
               params)
    finetune(root / "prepared", root / "adapters" / "tiny", root / "live", params)
    return root, params
