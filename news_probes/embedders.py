"""Frozen text embedders, built from an entry of `embedders` in params.yaml.

An entry says where the weights are (`source`) and how to encode:
  source:     a hub id ("intfloat/e5-large-v2"), a local directory, "package:<module>" for a pip package that
              ships the weights (it must expose get_model_path() or a model/ folder), or a GGUF file (a path,
              or "package:<module>/<file>.gguf"), converted once to a transformers folder
  kind:       sentence-transformers (default); mean-pool (transformers AutoModel, masked mean of the last hidden
              state: the frozen-LLM embedder); tfidf (word n-grams, sublinear tf, fitted on the train split
              only: the lexical row; no source, and sparse output that the ridge probe takes as it is)
  prefix:     prepended to every text ("query: " for e5)
  max_tokens: the model's window, special tokens included
  truncation: head (default) | head+tail | chunks: what a longer text is cut to (news_probes.tokens); chunks
              encodes every window of the text and pools them weighted by their token counts
  stride:     chunks only: tokens between window starts (default: the window, no overlap)
  dtype:      auto (default) | float32 | bfloat16 | float16: the precision the model runs in; auto is float32
              for a sentence-transformers encoder on a CPU (hardware.choose_backend), elsewhere it follows
              hardware.choose_dtype (bfloat16 only where native). Embeddings are always returned as float32.
  backend:    auto (default) | torch | onnx | onnx-int8 | openvino: sentence-transformers only; onnx runs the
              exported model in ONNX Runtime (fp32), onnx-int8 with int8 weights, openvino in OpenVINO in the
              entry's dtype (float32 or bfloat16) (news_probes.backends); auto follows hardware.choose_backend
  device:     auto (default: CUDA when present) | cpu | cuda | cuda:N
  batch_size, normalize
  ngram_max, min_df, max_features: tfidf only (defaults 2, 2, 50000)

An embedder that is fitted (tfidf) saves its state as fitted/<model>.json beside the embeddings; the probe stage
copies it into each probe folder, so that the scorer needs nothing else. `encode` leaves its token statistics
in `stats_` (share of texts cut, tokens seen, windows per text).
"""
import json
from collections import Counter
from pathlib import Path

import numpy as np

from news_probes.artifacts import fitted_path
from news_probes.backends import OnnxEncoder, OpenVinoEncoder, exported_model, openvino_model
from news_probes.hardware import BACKENDS, DTYPES, choose_backend, choose_device, choose_dtype, signature
from news_probes.io import InputError, read_json, write_json
from news_probes.log import progress
from news_probes.params import field_check, integer, registry_entry
from news_probes.sources import resolve_source
from news_probes.tokens import EMBED_TRUNCATION, special_tokens, windows

KINDS = ("sentence-transformers", "mean-pool", "tfidf")
ENTRY_KEYS = {"source", "kind", "prefix", "max_tokens", "truncation", "stride", "batch_size", "normalize", "dtype",
              "device", "backend"}
TFIDF_KEYS = {"kind", "prefix", "ngram_max", "min_df", "max_features"}


def embedder_config(params, model, params_path="params.yaml"):
    """The registry entry for `model`, checked so a typo fails here rather than deep inside a library."""
    field = f"embedders.{model}"
    kind = ((params.get("embedders") or {}).get(model) or {}).get("kind", KINDS[0])
    if kind not in KINDS:
        raise InputError(params_path, f"kind must be one of {KINDS}", field=field)
    keys = TFIDF_KEYS if kind == "tfidf" else ENTRY_KEYS
    config = registry_entry(params.get("embedders"), model, keys, params_path, "model", "models", field,
                            needs_source=kind != "tfidf")
    if config.get("truncation", "head") not in EMBED_TRUNCATION:
        raise InputError(params_path, f"truncation must be one of {EMBED_TRUNCATION}", field=f"{field}.truncation")
    if config.get("dtype", "auto") not in DTYPES:
        raise InputError(params_path, f"dtype must be one of {DTYPES}, not {config['dtype']!r}", field=f"{field}.dtype")
    backend = config.get("backend", "auto")
    if backend not in BACKENDS or (kind != KINDS[0] and backend not in ("auto", "torch")):
        allowed = BACKENDS if kind == KINDS[0] else ("auto", "torch")
        raise InputError(params_path, f"backend must be one of {allowed} for kind {kind}, not {backend!r}",
                         field=f"{field}.backend")
    if backend.startswith("onnx") and config.get("dtype", "auto") not in ("auto", "float32"):
        raise InputError(params_path, f"backend {backend} computes in float32 (int8 weights for onnx-int8): dtype "
                         f"must be auto or float32, not {config['dtype']!r}", field=f"{field}.dtype")
    if backend == "openvino" and config.get("dtype", "auto") == "float16":
        raise InputError(params_path, "backend openvino computes in float32 or bfloat16: dtype must be auto, "
                         "float32 or bfloat16, not 'float16'", field=f"{field}.dtype")
    minimums = {"batch_size": 1, "max_tokens": 4, "stride": 1, "ngram_max": 1, "min_df": 1, "max_features": 1}
    for key, minimum in minimums.items():
        if key in config:
            field_check(params_path, f"{field}.{key}", integer, config[key], minimum=minimum)
    return config


def unit_rows(matrix):
    """Rows scaled to unit length, in float32 whatever precision the model ran in."""
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


class WindowEmbedder:
    """A transformer encoder fed token windows (news_probes.tokens): one per text for head and head+tail, every
    window of the text for chunks; the windows of a text are pooled by their token counts. Subclasses load the
    model and give `_forward(input_ids, attention_mask)` -> one float32 vector per window."""

    def _setup(self, prefix, max_tokens, truncation, stride, batch_size, normalize):
        if truncation not in EMBED_TRUNCATION:
            raise ValueError(f"truncation must be one of {EMBED_TRUNCATION}, not {truncation!r}")
        self.prefix, self.max_tokens, self.batch_size, self.normalize = prefix, max_tokens, batch_size, normalize
        self.truncation, self.stride = truncation, stride
        self.prefix_ids_, self.suffix_ids_ = special_tokens(self.tokenizer)
        self.window_ = max_tokens - len(self.prefix_ids_) - len(self.suffix_ids_)
        if self.window_ < 1 or (stride is not None and not 0 < stride <= self.window_):
            raise ValueError(f"max_tokens {max_tokens} leaves {self.window_} tokens a window; stride must lie in "
                             f"1..{self.window_}")
        self.pad_id_ = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def text_windows(self, texts, chunk=512):
        """Per text, its windows of content ids (tokenised a chunk of texts at a time: the ids of a whole large
        dataset as Python lists would cost gigabytes), and the texts' full lengths."""
        per_text, lengths = [], []
        for i in range(0, len(texts), chunk):
            ids = self.tokenizer([self.prefix + t for t in texts[i:i + chunk]], add_special_tokens=False,
                                 truncation=False, verbose=False)["input_ids"]
            for row in ids:
                lengths.append(len(row))
                per_text.append(windows(row, self.window_, self.truncation, self.stride))
        return per_text, lengths

    def encode(self, texts, show_progress=False):
        import torch
        per_text, lengths = self.text_windows(list(texts))
        flat = [(i, w) for i, ws in enumerate(per_text) for w in ws]
        order = sorted(range(len(flat)), key=lambda k: -len(flat[k][1]))    # similar lengths pad least
        vectors = np.zeros((len(flat), self.dimension), np.float32)
        batches = range(0, len(order), self.batch_size)
        with torch.inference_mode():
            for start in progress(batches, enabled=show_progress, desc="encode", unit="batch"):
                picked = order[start:start + self.batch_size]
                rows = [self.prefix_ids_ + flat[k][1] + self.suffix_ids_ for k in picked]
                width = max(len(r) for r in rows)
                ids = torch.tensor([r + [self.pad_id_] * (width - len(r)) for r in rows], device=self.device)
                mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
                vectors[picked] = self._forward(ids, mask)
        weights = np.array([max(len(w), 1) for _, w in flat], np.float64)
        owners = np.array([i for i, _ in flat], np.int64)
        emb = np.zeros((len(per_text), self.dimension), np.float64)
        np.add.at(emb, owners, vectors * weights[:, None])
        emb = (emb / np.bincount(owners, weights, minlength=len(per_text))[:, None]).astype(np.float32)
        counts = [len(ws) for ws in per_text]
        self.stats_ = {"truncated_share": float(np.mean([n > self.window_ for n in lengths])) if lengths else 0.0,
                       "tokens": int(sum(len(w) + len(self.prefix_ids_) + len(self.suffix_ids_) for _, w in flat)),
                       "windows_per_text": {str(k): v for k, v in sorted(Counter(counts).items())}}
        return unit_rows(emb) if self.normalize else emb


class SentenceTransformerEmbedder(WindowEmbedder):
    def __init__(self, source, prefix="", max_tokens=256, truncation="head", stride=None, batch_size=32,
                 normalize=False, dtype="auto", device="auto", backend="auto"):
        import torch
        from sentence_transformers import SentenceTransformer
        self.device = choose_device(device)
        if backend.startswith("onnx") and (self.device != "cpu" or dtype not in ("auto", "float32")):
            raise ValueError(f"backend {backend} runs float32 models on the CPU, not {dtype} on {self.device}")
        if backend == "openvino" and (self.device != "cpu" or dtype == "float16"):
            raise ValueError(f"backend openvino runs float32 or bfloat16 on the CPU, not {dtype} on {self.device}")
        self.backend, model_dtype = choose_backend(backend, self.device, dtype)
        # exported backends trace the float32 model; OpenVINO then computes in model_dtype itself
        self.model = SentenceTransformer(resolve_source(source), device=self.device, model_kwargs={
            "dtype": torch.float32 if self.backend != "torch" else getattr(torch, model_dtype)})
        self.model.max_seq_length = max_tokens
        self.tokenizer = self.model.tokenizer
        self._setup(prefix, max_tokens, truncation, stride, batch_size, normalize)
        self.token_types_ = "token_type_ids" in self.tokenizer.model_input_names
        inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if self.token_types_ else [])
        if self.backend == "openvino":
            self.session_ = OpenVinoEncoder(openvino_model(self.model, inputs), torch.get_num_threads(), model_dtype)
        elif self.backend.startswith("onnx"):
            self.session_ = OnnxEncoder(exported_model(self.model, inputs, self.backend), torch.get_num_threads())
        else:
            self.session_ = None
        # the precision the encoder computes in: int8 weights for onnx-int8
        self.dtype = "int8" if self.backend == "onnx-int8" else model_dtype
        # the backend is part of what the numbers depend on: each runtime's kernels round differently
        self.hardware = {**signature(self.device, self.dtype), "backend": self.backend}

    @property
    def dimension(self):
        return self.model.get_embedding_dimension()

    def _forward(self, ids, mask):
        import torch
        features = {"input_ids": ids, "attention_mask": mask}
        if self.token_types_:
            features["token_type_ids"] = torch.zeros_like(ids)
        if self.session_ is not None:
            return self.session_({name: tensor.cpu().numpy() for name, tensor in features.items()})
        return self.model(features)["sentence_embedding"].float().cpu().numpy()


class MeanPoolEmbedder(WindowEmbedder):
    """A frozen causal or masked LM: mean of the last hidden state over the real (non-padding) tokens."""

    def __init__(self, source, prefix="", max_tokens=512, truncation="head", stride=None, batch_size=8,
                 normalize=False, dtype="auto", device="auto", backend="auto"):
        import torch
        from transformers import AutoModel, AutoTokenizer
        if backend not in ("auto", "torch"):
            raise ValueError(f"backend must be auto or torch for a mean-pool embedder, not {backend!r}")
        path = resolve_source(source)
        self.device, self.backend = choose_device(device), "torch"
        self.dtype = choose_dtype(dtype, self.device)
        self.hardware = {**signature(self.device, self.dtype), "backend": self.backend}
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModel.from_pretrained(path, dtype=getattr(torch, self.dtype)).to(self.device).eval()
        self._setup(prefix, max_tokens, truncation, stride, batch_size, normalize)

    @property
    def dimension(self):
        return self.model.config.hidden_size

    def _forward(self, ids, mask):
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)).float().cpu().numpy()


class TfidfEmbedder:
    """Word 1..ngram_max-grams, sublinear tf, idf and vocabulary from the texts given to `fit` (the train split
    only), rows scaled to unit length; `encode` returns a scipy CSR matrix (float32). Its state is plain JSON
    (vocabulary and idf), applied without scikit-learn's pickles."""
    kind = "tfidf"
    device, dtype, backend, max_tokens = "cpu", "float32", None, None

    def __init__(self, prefix="", ngram_max=2, min_df=2, max_features=50000):
        self.prefix, self.ngram_max, self.min_df, self.max_features = prefix, int(ngram_max), min_df, max_features
        self.hardware = signature("cpu", "float32")
        self.tokenizer = None

    def _counter(self, vocabulary=None):
        from sklearn.feature_extraction.text import CountVectorizer
        return CountVectorizer(ngram_range=(1, self.ngram_max), min_df=self.min_df, max_features=self.max_features,
                               vocabulary=vocabulary, dtype=np.float32)

    def fit(self, texts):
        counter = self._counter()
        counts = counter.fit_transform([self.prefix + t for t in texts]).tocsr()
        document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
        # scikit-learn's smoothed idf: as if one more document held every term
        self.idf_ = (np.log((1 + counts.shape[0]) / (1 + document_frequency)) + 1).astype(np.float32)
        self.vocabulary_ = {term: int(i) for term, i in counter.vocabulary_.items()}
        return self

    @property
    def dimension(self):
        return len(self.vocabulary_)

    def encode(self, texts, show_progress=False):
        from sklearn.preprocessing import normalize
        counts = self._counter(self.vocabulary_).transform([self.prefix + t for t in texts]).tocsr()
        counts.data = 1 + np.log(counts.data)
        matrix = normalize(counts.multiply(self.idf_[None, :]).tocsr()).astype(np.float32)
        self.stats_ = {"truncated_share": 0.0, "tokens": None, "windows_per_text": None}
        return matrix

    def save(self, path):
        write_json(path, {"kind": self.kind, "ngram_max": self.ngram_max, "min_df": self.min_df,
                          "max_features": self.max_features, "idf": self.idf_.tolist(),
                          "vocabulary": self.vocabulary_})

    def load(self, path):
        if not Path(path).is_file():
            raise InputError(path, "the fitted tfidf state is missing: re-run the embed stage (or `dvc pull`)")
        state = read_json(path)
        self.idf_ = np.array(state["idf"], np.float32)
        self.vocabulary_ = state["vocabulary"]
        return self


def engine(dtype, backend, device):
    """How an encoder computes, as messages name it: `float32 openvino on cpu` (tfidf has no backend)."""
    return " ".join(str(part) for part in (dtype, backend, "on", device) if part)


def concatenate(parts):
    """Embedding matrices side by side, as float32: sparse CSR when any part is sparse, dense otherwise."""
    import scipy.sparse
    if any(scipy.sparse.issparse(p) for p in parts):
        return scipy.sparse.hstack(parts, format="csr", dtype=np.float32)
    return np.hstack(parts).astype(np.float32)


class ConcatEmbedder:
    """Several embedders side by side: their vectors concatenated (sparse when any member is sparse)."""

    def __init__(self, members):
        self.members = members
        first = members[0]
        self.device, self.dtype, self.hardware, self.max_tokens = first.device, first.dtype, first.hardware, None
        self.backend = first.backend

    @property
    def dimension(self):
        return sum(m.dimension for m in self.members)

    def encode(self, texts, show_progress=False):
        return concatenate([m.encode(texts, show_progress=show_progress) for m in self.members])


class LastEncoding:
    """An embedder shared by several probes of one scorer (the members of a stack): it keeps the embeddings of
    the last texts it encoded, so that the list of texts a stack passes to every member is encoded once. Only
    that same list object, unchanged, is served from memory: another call with equal texts encodes again."""

    def __init__(self, embedder):
        self.embedder, self.texts_, self.snapshot_, self.matrix_ = embedder, None, None, None

    def __getattr__(self, name):
        return getattr(self.embedder, name)

    def encode(self, texts, show_progress=False):
        # identity, then content: a list refilled in place is not mistaken for the one encoded
        if texts is not self.texts_ or tuple(texts) != self.snapshot_:
            self.matrix_ = self.embedder.encode(texts, show_progress=show_progress)
            self.texts_, self.snapshot_ = texts, tuple(texts)
        return self.matrix_


def load_embedder(config, fitted_dir=None, model=None, dtype=None, shared=None):
    """Build an embedder from one registry entry of params.yaml (as scoring.json records it). A fitted kind
    (tfidf) reads its state from fitted_dir; a concatenation ({"kind": "concat", "members": {model: entry}})
    builds each member. `dtype`, when given, replaces the entries' own (the scorer's choice for its machine).
    `shared`, a dict kept by the caller, makes equal entries of the same model one LastEncoding embedder."""
    if shared is not None and config.get("kind") != "concat":
        key = (model, json.dumps(config, sort_keys=True))
        if key not in shared:
            shared[key] = LastEncoding(load_embedder(config, fitted_dir, model, dtype))
        return shared[key]
    config = dict(config)
    kind = config.pop("kind", "sentence-transformers")
    if kind == "concat":
        return ConcatEmbedder([load_embedder(entry, fitted_dir, name, dtype, shared)
                               for name, entry in config["members"].items()])
    if kind == "tfidf":
        embedder = TfidfEmbedder(**config)
        return embedder if fitted_dir is None else embedder.load(fitted_path(fitted_dir, model))
    cls = {"sentence-transformers": SentenceTransformerEmbedder, "mean-pool": MeanPoolEmbedder}[kind]
    return cls(**{**config, **({"dtype": dtype} if dtype else {})})
