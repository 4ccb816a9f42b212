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
import importlib
import importlib.util
import os
from pathlib import Path

import numpy as np

from common import staged_directory
from hardware import choose_device, choose_dtype, signature

KINDS = ("sentence-transformers", "mean-pool")


def resolve_source(source):
    """A path or hub id that from_pretrained / SentenceTransformer accept (always a str).

    "package:<module>" is a pip package that ships a model folder; "package:<module>/<file>" a file inside the
    package, found without importing it (packages installed with --no-deps may not import). A GGUF file is
    converted once to a transformers folder in the conversion cache (see gguf_folder) and that folder returned.
    """
    if source.startswith("package:"):
        module, _, inner = source.split(":", 1)[1].partition("/")
        if inner:
            path = package_dir(module) / inner
            if not path.exists():
                raise FileNotFoundError(f"{source}: no {inner} in package {module} ({path.parent})")
        else:
            module = importlib.import_module(module)
            if hasattr(module, "get_model_path"):
                return str(module.get_model_path())
            return str(Path(module.__file__).parent / "model")
    else:
        path = Path(source).expanduser()
        if not path.exists():
            return source
    return gguf_folder(path) if path.suffix == ".gguf" else str(path.resolve())


def package_dir(module):
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {module!r} is not installed (see the README's install step)")
    return Path(list(spec.submodule_search_locations)[0])


def conversion_cache():
    """Where converted base models live: $NEWS_PROBES_CACHE, else ~/.cache/news-probes (outside the repo: base
    weights are never DVC outputs)."""
    return Path(os.environ.get("NEWS_PROBES_CACHE", "~/.cache/news-probes")).expanduser()


def gguf_folder(gguf_path):
    """A transformers folder (fp32 safetensors + tokenizer) converted from a GGUF file, once per file content.

    transformers dequantises GGUF to fp32 on load (20-40 s for a 135M model); the folder is keyed by the file's
    SHA-256, written beside its final name and renamed, so an interrupted conversion is never reused.
    """
    import hashlib
    gguf_path = Path(gguf_path).resolve()
    digest = hashlib.sha256()
    with open(gguf_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    folder = conversion_cache() / "gguf" / f"{gguf_path.stem}-{digest.hexdigest()[:16]}"
    if (folder / "config.json").is_file():
        return str(folder)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    print(f"converting {gguf_path.name} to a transformers folder in {folder} (once)")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # The dequantised model is plain fp32, but transformers keeps the GGUF quantizer attached and refuses to save.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with staged_directory(folder) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return str(folder)


def unit_rows(matrix):
    """Rows scaled to unit length, in float32 whatever precision the model ran in."""
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def model_input(record):
    """The text a model sees: title and body, as the study built it."""
    return f"{record['title']}\n\n{record['text']}" if record["title"] else record["text"]


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
