"""Frozen text embedders, built from an entry of `embedders` in params.yaml.

An entry says where the weights are (`source`) and how to encode:
  source:     a hub id ("intfloat/e5-large-v2"), a local directory, "package:<module>" for a pip package that
              ships the weights (it must expose get_model_path() or a model/ folder), or a GGUF file (a path,
              or "package:<module>/<file>.gguf"), converted once to a transformers folder
  kind:       sentence-transformers (default) or mean-pool (transformers AutoModel, masked mean of the
              last hidden state: the frozen-LLM embedder)
  prefix:     prepended to every text ("query: " for e5)
  max_tokens: inputs are cut to this many tokens, keeping the head
  dtype:      auto (default) | float32 | bfloat16 | float16: the precision the model runs in; auto follows
              hardware.choose_dtype (bfloat16 only where native). Embeddings are always returned as float32.
  device:     auto (default: CUDA when present) | cpu | cuda | cuda:N
  batch_size, normalize
"""
import numpy as np

from news_probes.hardware import DTYPES, choose_device, choose_dtype, signature
from news_probes.io import InputError
from news_probes.params import registry_entry
from news_probes.sources import resolve_source

KINDS = ("sentence-transformers", "mean-pool")
ENTRY_KEYS = {"source", "kind", "prefix", "max_tokens", "batch_size", "normalize", "dtype", "device"}


def embedder_config(params, model, params_path="params.yaml"):
    """The registry entry for `model`, checked so a typo fails here rather than deep inside a library."""
    field = f"embedders.{model}"
    config = registry_entry(params.get("embedders"), model, ENTRY_KEYS, params_path, "model", "models", field)
    if config.get("kind", KINDS[0]) not in KINDS:
        raise InputError(params_path, f"kind must be one of {KINDS}", field=field)
    if config.get("dtype", "auto") not in DTYPES:
        raise InputError(params_path, f"dtype must be one of {DTYPES}, not {config['dtype']!r}", field=f"{field}.dtype")
    return config


def unit_rows(matrix):
    """Rows scaled to unit length, in float32 whatever precision the model ran in."""
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


class SentenceTransformerEmbedder:
    def __init__(self, source, prefix="", max_tokens=256, batch_size=32, normalize=False, dtype="auto",
                 device="auto"):
        import torch
        from sentence_transformers import SentenceTransformer
        self.prefix, self.batch_size, self.normalize = prefix, batch_size, normalize
        self.device = choose_device(device)
        self.dtype = choose_dtype(dtype, self.device)
        self.hardware = signature(self.device, self.dtype)
        self.model = SentenceTransformer(resolve_source(source), device=self.device,
                                         model_kwargs={"dtype": getattr(torch, self.dtype)})
        self.model.max_seq_length = max_tokens
        self.max_tokens = max_tokens
        self.tokenizer = self.model.tokenizer

    @property
    def dimension(self):
        return self.model.get_embedding_dimension()

    def encode(self, texts, show_progress=True):
        texts = [self.prefix + t for t in texts]
        emb = self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=show_progress,
                                convert_to_numpy=True).astype(np.float32)
        return unit_rows(emb) if self.normalize else emb


class MeanPoolEmbedder:
    """A frozen causal or masked LM: mean of the last hidden state over the real (non-padding) tokens."""

    def __init__(self, source, prefix="", max_tokens=512, batch_size=8, normalize=False, dtype="auto",
                 device="auto"):
        import torch
        from transformers import AutoModel, AutoTokenizer
        self.torch = torch
        self.prefix, self.max_tokens, self.batch_size, self.normalize = prefix, max_tokens, batch_size, normalize
        path = resolve_source(source)
        self.device = choose_device(device)
        self.dtype = choose_dtype(dtype, self.device)
        self.hardware = signature(self.device, self.dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModel.from_pretrained(path, dtype=getattr(torch, self.dtype)).to(self.device).eval()

    @property
    def dimension(self):
        return self.model.config.hidden_size

    def encode(self, texts, show_progress=True):
        from tqdm import tqdm
        torch = self.torch
        batches = range(0, len(texts), self.batch_size)
        out = []
        with torch.inference_mode():
            for start in tqdm(batches, desc="Batches", disable=not show_progress):
                chunk = [self.prefix + t for t in texts[start:start + self.batch_size]]
                enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_tokens,
                                     return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
                out.append(pooled.float().cpu().numpy())
        emb = np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dimension), np.float32)
        return unit_rows(emb) if self.normalize else emb


def load_embedder(config):
    """Build an embedder from one registry entry of params.yaml."""
    config = dict(config)
    kind = config.pop("kind", "sentence-transformers")
    cls = {"sentence-transformers": SentenceTransformerEmbedder, "mean-pool": MeanPoolEmbedder}[kind]
    return cls(**config)


def token_counts(tokenizer, texts, max_tokens, chunk=512):
    """(share of texts longer than max_tokens, tokens the model actually sees), special tokens included.

    Tokenised a chunk at a time: the token ids of a whole large dataset as Python lists would cost gigabytes.
    """
    if not texts:
        return 0.0, 0
    lengths = np.concatenate([[len(ids) for ids in tokenizer(texts[i:i + chunk], add_special_tokens=True,
                                                             truncation=False, verbose=False)["input_ids"]]
                              for i in range(0, len(texts), chunk)])
    return float(np.mean(lengths > max_tokens)), int(np.minimum(lengths, max_tokens).sum())
