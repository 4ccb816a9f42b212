"""Where model weights come from: a hub id, a local directory, a pip package that ships them (`package:<module>`,
or `package:<module>/<file>`), or a GGUF file converted once to a transformers folder in a cache outside the
repository (base weights are never DVC outputs). Every model loader (embedders, the LoRA adapter) resolves its
`source` here."""
import importlib
import importlib.util
import os
from pathlib import Path

from news_probes.io import staged_directory
from news_probes.log import logger


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

    transformers dequantises every GGUF tensor to fp32 on load, which is slow; the folder is keyed by the file's
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
    logger.info(f"converting {gguf_path.name} to a transformers folder in {folder} (once)")
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
