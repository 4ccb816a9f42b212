"""params.yaml: reading it, and the checks shared by its registries (embedders, finetune profiles) and grid axes,
so that a typo fails with the file and the field before any model loads."""
import yaml

from news_probes.io import InputError


def load_params(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def as_list(value):
    """`probe: mlp` and `probe: [ridge, mlp]` both mean a list of names (so `dvc exp run -S probe=mlp` works)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def check_names(names, registry, params_path, key):
    """Every name selected under `key` must have an entry in `registry`."""
    for name in names:
        if name not in registry:
            raise InputError(params_path, f"unknown name {name!r}; known: {', '.join(sorted(registry))}", field=key)


def registry_entry(registry, name, allowed_keys, params_path, kind, name_field, field):
    """A copy of registry[name] (an embedder entry, a finetune profile), checked: the name exists, every key is
    allowed, `source` is a non-empty string."""
    registry = registry or {}
    if isinstance(name, str) and "." in name:
        # DVC splits params paths at dots: `embedders.bge-v1.5` would be looked up as embedders -> bge-v1 -> 5.
        raise InputError(params_path, f"{kind} name {name!r} contains '.': DVC cannot track it as a parameter; "
                         f"use '_' or '-' instead", field=name_field)
    if name not in registry:
        raise InputError(params_path, f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}",
                         field=name_field)
    entry = dict(registry[name] or {})
    unknown = set(entry) - set(allowed_keys)
    if unknown:
        raise InputError(params_path, f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed_keys)}", field=field)
    if not isinstance(entry.get("source"), str) or not entry["source"]:
        raise InputError(params_path, "needs a source (hub id, local directory, package:<module> or a GGUF file)",
                         field=field)
    return entry


def candidates(params):
    """The grid: (model, probe) for every name of `models` times every name of `probe`, in params order."""
    return [(model, probe) for model in as_list(params.get("models")) for probe in as_list(params.get("probe"))]
