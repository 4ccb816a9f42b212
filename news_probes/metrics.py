"""How every candidate and the baseline are scored, by the same code: MAE and RMSE over all article x dimension
cells, Spearman per dimension then averaged (as the reference study did), the spread over seeds, filter metrics
(what a threshold or tiers on a weighted score keep and miss), and seeded bootstrap intervals over test
articles."""
import numpy as np
from scipy.stats import spearmanr

from news_probes.io import InputError
from news_probes.params import field_check, real


def spearman(truth, pred):
    """Spearman's rho; undefined (NaN) when either side is constant."""
    if np.ptp(truth) == 0 or np.ptp(pred) == 0:
        return float("nan")
    return float(spearmanr(truth, pred).statistic)


def score(truth, pred, dimensions):
    """Overall and per-dimension MAE, RMSE and Spearman for one candidate."""
    truth, pred = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    errors = pred - truth
    per_dimension = {
        name: {"mae": float(np.abs(errors[:, d]).mean()),
               "rmse": float(np.sqrt((errors[:, d] ** 2).mean())),
               "spearman": spearman(truth[:, d], pred[:, d])}
        for d, name in enumerate(dimensions)}
    rhos = [m["spearman"] for m in per_dimension.values() if not np.isnan(m["spearman"])]
    return {"mae": float(np.abs(errors).mean()), "rmse": float(np.sqrt((errors ** 2).mean())),
            "spearman": float(np.mean(rhos)) if rhos else float("nan"), "n_test": int(len(truth)),
            "per_dimension": per_dimension}


def bootstrap(errors, candidates, best, baseline_errors, resamples, seed):
    """95% intervals: each candidate's MAE, its gap to the baseline, and its paired difference to the best.

    errors[c] and baseline_errors hold one absolute error per test article (mean over dimensions); every
    resample draws the same articles for all candidates and the baseline, so the gap and the differences
    between candidates are paired (one draw matrix serves every pair, which is why this stays a percentile
    bootstrap rather than a scipy.stats.bootstrap call per pair). Without a baseline (None) there is no gap.
    """
    n = len(next(iter(errors.values())))
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    intervals = {}
    for c in candidates:
        mae = errors[c][draws].mean(axis=1)
        to_best = (errors[c] - errors[best])[draws].mean(axis=1)
        intervals[c] = {"mae": np.percentile(mae, [2.5, 97.5]), "to_best": np.percentile(to_best, [2.5, 97.5])}
        if baseline_errors is not None:
            intervals[c]["gap"] = np.percentile((errors[c] - baseline_errors)[draws].mean(axis=1), [2.5, 97.5])
    return intervals


# What a team does with the scores: a weighted score per article, kept when it reaches a threshold, and tiers.
# The defaults suit 0-10 scores: 4.5 is the reference study's routing rule ("weighted average >= 4.5"); the high
# tier (6 and above) is well clear of it, the low tier (below 3) well under it.
FILTER_DEFAULTS = {"weights": None, "threshold": 4.5, "tiers": {"high": 6.0, "medium": 3.0}}
TIERS = ("high", "medium", "low")


def filter_config(params, dimensions, params_path="params.yaml"):
    """`filter` from params with its defaults: weights per dimension (None: equal), threshold, tiers; checked so
    that a dimension name not in the data, a negative weight or inverted tiers fail with the field."""
    section = {**FILTER_DEFAULTS, **(params.get("filter") or {})}
    unknown = set(section) - set(FILTER_DEFAULTS)
    if unknown:
        raise InputError(params_path, f"unknown keys {sorted(unknown)}; allowed: {sorted(FILTER_DEFAULTS)}",
                         field="filter")
    given = section["weights"] or {name: 1.0 for name in dimensions}
    if not isinstance(given, dict):
        raise InputError(params_path, "must be {dimension: weight} or null (equal weights)", field="filter.weights")
    for name, weight in given.items():
        if name not in dimensions:
            raise InputError(params_path, f"no dimension {name!r} in the data; dimensions: {', '.join(dimensions)}",
                             field=f"filter.weights.{name}")
        field_check(params_path, f"filter.weights.{name}", real, weight, at_least=0)
    weights = [float(given.get(name, 0.0)) for name in dimensions]
    if sum(weights) <= 0:
        raise InputError(params_path, "at least one weight must be above 0", field="filter.weights")
    tiers = {**FILTER_DEFAULTS["tiers"], **(section["tiers"] or {})}
    numbers = {"threshold": section["threshold"], "tiers.high": tiers.get("high"), "tiers.medium": tiers.get("medium")}
    for field, value in numbers.items():
        field_check(params_path, f"filter.{field}", real, value)
    if set(tiers) != {"high", "medium"} or not tiers["medium"] < tiers["high"]:
        raise InputError(params_path, "needs high and medium, medium below high", field="filter.tiers")
    return {"weights": dict(zip(dimensions, weights)), "threshold": float(section["threshold"]),
            "tiers": {"high": float(tiers["high"]), "medium": float(tiers["medium"])}}


def weighted_score(scores, config):
    """Each article's weighted score: its scores averaged with the filter's dimension weights."""
    weights = np.array(list(config["weights"].values()), dtype=np.float64)
    return np.asarray(scores, dtype=np.float64) @ weights / weights.sum()


def tier_of(values, tiers):
    return np.where(values >= tiers["high"], "high", np.where(values >= tiers["medium"], "medium", "low"))


def ratio(numerator, denominator):
    return float(numerator / denominator) if denominator else float("nan")


def ndcg(truth, pred, share, floor):
    """NDCG of the articles ranked by predicted score, over the top `share` of them; the gain of an article is its
    true score above `floor` (the bottom of the score range, so gains are never negative)."""
    k = max(1, int(np.ceil(share * len(truth))))
    discounts = 1 / np.log2(np.arange(2, k + 2))
    gains = np.asarray(truth, dtype=np.float64) - floor
    found = gains[np.argsort(-pred, kind="stable")[:k]] @ discounts
    ideal = np.sort(gains)[::-1][:k] @ discounts
    return ratio(found, ideal)


def filter_metrics(truth, pred, dimensions, config, score_range):
    """How well the predictions filter: the weighted score's MAE; precision, recall, F1 and false-negative rate of
    "weighted score >= threshold"; the tier confusion matrix (true tier -> predicted tier counts) and each true
    tier's recall; NDCG over the top 10% ranked by predicted weighted score; each dimension's bias (mean signed
    error: negative means predicted too low)."""
    truth, pred = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    true_score, predicted_score = weighted_score(truth, config), weighted_score(pred, config)
    actual, kept = true_score >= config["threshold"], predicted_score >= config["threshold"]
    hits = int((actual & kept).sum())
    precision, recall = ratio(hits, kept.sum()), ratio(hits, actual.sum())
    true_tier, predicted_tier = tier_of(true_score, config["tiers"]), tier_of(predicted_score, config["tiers"])
    confusion = {t: {p: int(((true_tier == t) & (predicted_tier == p)).sum()) for p in TIERS} for t in TIERS}
    return {
        "weighted_mae": float(np.abs(predicted_score - true_score).mean()),
        "threshold": config["threshold"], "positives": int(actual.sum()),
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan"),
        "false_negative_rate": ratio(int((actual & ~kept).sum()), actual.sum()),
        "tiers": config["tiers"], "confusion": confusion,
        "tier_recall": {t: ratio(confusion[t][t], sum(confusion[t].values())) for t in TIERS},
        "ndcg_at_10pct": ndcg(true_score, predicted_score, 0.1, score_range[0]),
        "bias": {d: float((pred[:, i] - truth[:, i]).mean()) for i, d in enumerate(dimensions)},
    }


def seed_spread(truth, seed_scores):
    """Each seed's own test MAE, and their mean, sd (n - 1), min and max: the spread a single run would have."""
    maes = [float(np.abs(np.asarray(s, dtype=np.float64) - truth).mean()) for s in seed_scores]
    return {"n": len(maes), "mae": maes, "mean": float(np.mean(maes)),
            "sd": float(np.std(maes, ddof=1)) if len(maes) > 1 else 0.0, "min": min(maes), "max": max(maes)}


def seed_sd(metrics):
    """The spread of a candidate's single seeds from its metrics, None where it has one seed (or none)."""
    seeds = metrics.get("seeds") or {}
    return seeds["sd"] if seeds.get("n", 0) > 1 else None


def candidate_metrics(truth, predictions, dimensions, filter_cfg, score_range):
    """All metrics of one candidate (or the baseline) from its predictions of both splits: the test split's
    (overall and per dimension, filter metrics, and the seeds' spread where there are seeds) and, under `val`,
    the validation split's (which chooses the best candidate)."""
    test = predictions["test"]
    metrics = score(truth["test"], test["scores"], dimensions)
    val = score(truth["val"], predictions["val"]["scores"], dimensions)
    metrics["val"] = {k: val[k] for k in ("mae", "rmse", "spearman", "n_test")}
    if test["seed_scores"] is not None:
        metrics["seeds"] = seed_spread(truth["test"], test["seed_scores"])
    metrics["filter"] = filter_metrics(truth["test"], test["scores"], dimensions, filter_cfg, score_range)
    return metrics
