"""params.yaml: reading it, and the checks shared by its registries (embedders, finetune profiles) and grid axes,
so that a typo fails with the file and the field before any model loads."""
import yaml

from news_probes.io import InputError


def load_params(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# Typed values: estimators and registries check their settings with these, raising ValueError("<name> must be
# ..."), which the stage turns into `params.yaml: <section>: <message>`. A string is never taken for a list.

def integer(value, name, minimum=None):
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise ValueError(f"{name} must be an integer{f' >= {minimum}' if minimum is not None else ''}, not {value!r}")
    return value


def real(value, name, above=None, at_least=None, at_most=None):
    """A number; `above` excludes its bound, `at_least` and `at_most` include theirs."""
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or value != value
    bad = bad or (above is not None and not value > above) or (at_least is not None and not value >= at_least)
    if bad or (at_most is not None and not value <= at_most):
        limits = [f"> {above}" if above is not None else None, f">= {at_least}" if at_least is not None else None,
                  f"<= {at_most}" if at_most is not None else None]
        limits = " and ".join(x for x in limits if x)
        raise ValueError(f"{name} must be a number{' ' + limits if limits else ''}, not {value!r}")
    return float(value)


def text(value, name):
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, not {value!r}")
    return value


def listed(value, name, check):
    """A non-empty list whose items pass check(item, name) (a tuple is taken too; a string never)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a non-empty list, not {value!r}")
    return [check(item, f"{name} item") for item in value]


def field_check(params_path, field, check, value, **limits):
    """check(value, name, **limits) for one field of params: its ValueError as `params.yaml: <field>: must be ..`."""
    try:
        return check(value, "", **limits)
    except ValueError as err:
        raise InputError(params_path, str(err).strip(), field=field) from None


def base_seed(params, params_path="params.yaml"):
    """`seed`: the run's base seed, an integer >= 0."""
    seed = params.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(params_path, f"must be an integer >= 0, not {seed!r}", field="seed")
    return seed


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


def registry_entry(registry, name, allowed_keys, params_path, kind, name_field, field, needs_source=True):
    """A copy of registry[name] (an embedder entry, a finetune profile), checked: the name exists, every key is
    allowed, `source` is a non-empty string (where the entry loads weights)."""
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
    if needs_source and (not isinstance(entry.get("source"), str) or not entry["source"]):
        raise InputError(params_path, "needs a source (hub id, local directory, package:<module> or a GGUF file)",
                         field=field)
    return entry


def combined(params, params_path="params.yaml"):
    """`combined`: {name: [first, second]}, concatenations of two embeddings of the grid (either may itself be a
    combined name, so three or more chain as pairs); checked so that a member outside the grid fails here."""
    entries = params.get("combined") or {}
    known = set(as_list(params.get("models")))
    for name, members in entries.items():
        field = f"combined.{name}"
        if not isinstance(members, list) or len(members) != 2:
            raise InputError(params_path, "must list two models: [first, second]", field=field)
        if "." in name:
            raise InputError(params_path, "a name with '.' cannot be tracked by DVC; use '_' or '-'", field=field)
        for member in members:
            if member not in known:
                raise InputError(params_path, f"{member!r} is neither in `models` nor combined before it",
                                 field=field)
        known.add(name)
    return {name: list(members) for name, members in entries.items()}


def grid_models(params, params_path="params.yaml"):
    """The embeddings the probes are fitted on: every name of `models`, then every combined name."""
    models = params.get("models")
    if not isinstance(models, (str, list)) or not as_list(models) or not all(isinstance(m, str) for m in models):
        raise InputError(params_path, f"must name at least one model, not {models!r}", field="models")
    return as_list(models) + list(combined(params, params_path))


def candidates(params, params_path="params.yaml"):
    """The grid: (model, probe) for every grid model times every name of `probe`, in params order."""
    probes = params.get("probe")
    if not isinstance(probes, (str, list)) or not as_list(probes):
        raise InputError(params_path, f"must name at least one probe, not {probes!r}", field="probe")
    return [(model, probe) for model in grid_models(params, params_path) for probe in as_list(probes)]


STACKED = ("stacked", "val-weights")     # the stack stage's candidate (news_probes.stacking)


def scored_candidates(params):
    """The rows evaluate scores: the grid, and the stacked candidate when the grid has two or more."""
    grid = candidates(params)
    return grid + [STACKED] if len(grid) >= 2 else grid


def scoring_entry(params, model):
    """What a probe folder records of its embedder for scoring: the registry entry, or for a combined name a
    concatenation of its members' entries."""
    pairs = params.get("combined") or {}
    if model in pairs:
        return {"kind": "concat", "members": {m: scoring_entry(params, m) for m in pairs[model]}}
    return dict((params.get("embedders") or {})[model] or {})
