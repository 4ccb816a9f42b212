"""Hybrid scoring: a probe (the screen) scores every article, the fine-tuned adapter re-scores only the articles
the routing rule sends on; the hybrid's scores are the adapter's for routed articles and the probe's for the rest.

Rules (`route.by`), each a per-article measure routed when it reaches the threshold:
  weighted_score  the probe's weighted score (the evaluation's filter weights): articles that may matter are
                  scored again, the clearly low ones stop at the probe (the reference study's two-stage design)
  uncertainty     the disagreement of the probe's members: the sd of its seeds' predictions, or for the stacked
                  candidate the weighted sd of its members' predictions, averaged over dimensions. Where the
                  members disagree, the probe's score is least settled.
A threshold at the bottom of the measure routes every article (the hybrid is the adapter); one above its range
routes none (the hybrid is the probe).

The operating point is chosen on the validation split only: of the thresholds that meet every target
(`recall_high`: the share of true high-tier articles routed to the adapter; `max_mae_loss`: the hybrid's MAE at
most this much above the adapter's), the one routing the fewest articles. Costs per article come from latencies
measured beside each other in one process: the probe path (embedding included) for every article, the adapter
for the routed share.
"""
import numpy as np

from news_probes.io import InputError
from news_probes.metrics import tier_of, weighted_score
from news_probes.params import field_check, listed, real

RULES = ("weighted_score", "uncertainty")
TARGETS = ("recall_high", "max_mae_loss")
DEFAULTS = {"screen": "best", "by": "weighted_score", "thresholds": {"quantiles": 20},
            "target": {"recall_high": 0.95, "max_mae_loss": 0.02}}


def route_config(params, params_path="params.yaml"):
    """`route` from params with its defaults, checked so that a wrong type or name fails with the field."""
    section = {**DEFAULTS, **(params.get("route") or {})}
    unknown = set(section) - set(DEFAULTS)
    if unknown:
        raise InputError(params_path, f"unknown keys {sorted(unknown)}; allowed: {sorted(DEFAULTS)}", field="route")
    if section["by"] not in RULES:
        raise InputError(params_path, f"must be one of {RULES}, not {section['by']!r}", field="route.by")
    thresholds = section["thresholds"]
    if isinstance(thresholds, dict):
        count = thresholds.get("quantiles")
        if set(thresholds) != {"quantiles"} or isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InputError(params_path, "must be a list of numbers or {quantiles: N} with N >= 1",
                             field="route.thresholds")
    else:
        field_check(params_path, "route.thresholds", lambda value, name: listed(value, name, real), thresholds)
    target = section["target"] or {}
    if not isinstance(target, dict) or set(target) - set(TARGETS):
        raise InputError(params_path, f"must be a mapping with keys among {TARGETS}", field="route.target")
    bounds = {"recall_high": {"at_least": 0, "at_most": 1}, "max_mae_loss": {}}
    for key, value in target.items():
        if value is not None:
            field_check(params_path, f"route.target.{key}", real, value, **bounds[key])
    if not isinstance(section["screen"], str) or not section["screen"]:
        raise InputError(params_path, "must be `best` or a candidate as <model>/<probe>", field="route.screen")
    return {**section, "target": {k: v for k, v in target.items() if v is not None}}


def disagreement(member_scores, weights=None):
    """Per article: the (weighted) sd of the members' predictions, averaged over dimensions.

    member_scores: (members, articles, dimensions); weights: None (equal: a seed ensemble), (members,) or
    (dimensions, members) (a stack's shared or per-dimension weights)."""
    P = np.asarray(member_scores, dtype=np.float64)
    k, _, d = P.shape
    w = np.full((d, k), 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)
    w = np.broadcast_to(w, (d, k)) / np.broadcast_to(w, (d, k)).sum(axis=1, keepdims=True)
    mean = np.einsum("dk,knd->nd", w, P)
    variance = np.einsum("dk,knd->nd", w, (P - mean[None]) ** 2)
    return np.sqrt(variance).mean(axis=1)


def measure(by, scores, filter_cfg, member_scores=None, member_weights=None):
    """The per-article quantity the rule thresholds."""
    if by == "weighted_score":
        return weighted_score(scores, filter_cfg)
    if member_scores is None or len(member_scores) < 2:
        raise ValueError("route.by uncertainty needs a probe with two or more seeds, or the stacked candidate")
    return disagreement(member_scores, member_weights)


def routed(values, threshold):
    """True where the article goes on to the adapter; a threshold of None routes every article (the choice when
    no threshold meets the targets)."""
    values = np.asarray(values)
    return np.ones(len(values), bool) if threshold is None else values >= threshold


def hybrid(probe_scores, adapter_scores, mask):
    return np.where(np.asarray(mask)[:, None], adapter_scores, probe_scores)


def thresholds_for(spec, val_values):
    """The thresholds to sweep: the listed ones, or the validation measure's quantiles (chosen on validation)."""
    if isinstance(spec, dict):
        levels = np.linspace(0.0, 1.0, spec["quantiles"] + 1)
        return sorted(set(np.round(np.quantile(val_values, levels), 4).tolist()))
    return sorted(set(float(t) for t in spec))


def point(truth, probe_scores, adapter_scores, mask, filter_cfg):
    """What one routing does on one split: share routed, the hybrid's MAE and RMSE, the share of true high-tier
    articles routed (recall_high), and the share of articles passing the filter threshold that stop at the probe
    (false_negative_rate: the screen's misses)."""
    truth = np.asarray(truth, dtype=np.float64)
    errors = hybrid(probe_scores, adapter_scores, mask) - truth
    true_score = weighted_score(truth, filter_cfg)
    high = tier_of(true_score, filter_cfg["tiers"]) == "high"
    positive = true_score >= filter_cfg["threshold"]
    return {"share_routed": float(np.mean(mask)), "mae": float(np.abs(errors).mean()),
            "rmse": float(np.sqrt((errors ** 2).mean())),
            "recall_high": float(mask[high].mean()) if high.any() else float("nan"),
            "false_negative_rate": float((~mask[positive]).mean()) if positive.any() else float("nan")}


def curve(truth, probe_scores, adapter_scores, values, thresholds, filter_cfg):
    """One point per threshold, then the two ends: the probe alone (nothing routed, no adapter cost) and the
    adapter alone (every article, no probe cost). Each row has `point`: threshold, probe alone or adapter alone."""
    n = len(truth)
    rows = [{"point": "threshold", "threshold": t,
             **point(truth, probe_scores, adapter_scores, routed(values, t), filter_cfg)} for t in thresholds]
    rows.append({"point": "probe alone", "threshold": None,
                 **point(truth, probe_scores, adapter_scores, np.zeros(n, bool), filter_cfg)})
    rows.append({"point": "adapter alone", "threshold": None,
                 **point(truth, probe_scores, adapter_scores, np.ones(n, bool), filter_cfg)})
    return rows


def meets(row, target, adapter_mae):
    if "recall_high" in target and not row["recall_high"] >= target["recall_high"]:
        return False
    return "max_mae_loss" not in target or row["mae"] <= adapter_mae + target["max_mae_loss"]


def choose(val_rows, target):
    """The validation row (a threshold) routing the fewest articles among those meeting every target; ties go to
    the lower MAE, then the higher threshold. None when no threshold meets the targets."""
    adapter_mae = next(r["mae"] for r in val_rows if r["point"] == "adapter alone")
    fit = [r for r in val_rows if r["point"] == "threshold" and meets(r, target, adapter_mae)]
    if not fit:
        return None
    return min(fit, key=lambda r: (r["share_routed"], r["mae"], -r["threshold"]))


def with_costs(rows, probe_ms, adapter_ms, basis=""):
    """Each row's expected cost per article (`cost<basis>_ms`) and speedup over the adapter alone
    (`speedup<basis>`), from the two paths' measured latencies: the probe for every article (except at the
    adapter-alone end), the adapter for the routed share."""
    out = []
    for row in rows:
        probe_part = 0.0 if row["point"] == "adapter alone" else probe_ms
        cost = probe_part + row["share_routed"] * adapter_ms
        out.append({**row, f"cost{basis}_ms": cost,
                    f"speedup{basis}": adapter_ms / cost if cost > 0 else float("nan")})
    return out
