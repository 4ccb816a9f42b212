"""Shared fixtures: default params, the shared datasets, tiny models built on the spot, and a tiny pipeline run.
Plain helpers (generated records, project copies, shell commands) are in helpers.py."""
import copy
import os
from pathlib import Path

import pytest
import yaml

from helpers import REPO, WORDS, make_records, tiny_finetune_profile, write_lines

# Quiet by default: no records below WARNING and no progress bars, here and in the commands and stages the tests
# start (they inherit the environment). `NEWS_PROBES_LOG_LEVEL=INFO pytest -s` shows them.
os.environ.setdefault("NEWS_PROBES_LOG_LEVEL", "WARNING")


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
    prepared/, emb/tiny/, meta/tiny.json, probes/tiny/, fit/tiny.json, stacked/ and stack.json (the stacked
    candidate over the three probes), adapters/tiny/, live/ (DVCLive), data.json. Tests write their own outputs
    elsewhere."""
    from news_probes.stages.embed import embed
    from news_probes.stages.finetune import finetune
    from news_probes.stages.prepare import prepare
    from news_probes.stages.probe import fit_probes
    from news_probes.stages.stack import stack
    root = tmp_path_factory.mktemp("tiny-pipeline")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["embedders"]["tiny"] = {"source": str(tiny_bert_dir), "max_tokens": 32, "batch_size": 16}
    params.update(models=["tiny"], combined={}, probes={"ridge": {}, "mlp": {"hidden": [16], "epochs": 20},
                                           "lightgbm": {"n_estimators": 30}})
    params["finetune"] = {"profile": "tiny", "profiles": {"tiny": tiny_finetune_profile(tiny_qwen_dir, eval_steps=3)}}
    prepare(write_lines(root / "raw.jsonl", make_records(120)), root / "prepared", root / "data.json", params)
    embed("tiny", root / "prepared", root / "emb" / "tiny", root / "meta" / "tiny.json", params)
    fit_probes("tiny", root / "prepared", root / "emb" / "tiny", root / "probes" / "tiny", root / "fit" / "tiny.json",
               params)
    stack(root / "prepared", root / "probes", root / "stacked", root / "stack.json", params)
    finetune(root / "prepared", root / "adapters" / "tiny", root / "live", params)
    return root, params
