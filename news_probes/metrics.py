"""How every candidate and the baseline are scored, by the same code: MAE and RMSE over all article x dimension
cells, Spearman per dimension then averaged (as the reference study did), and seeded bootstrap intervals over
test articles."""
import numpy as np
from scipy.stats import spearmanr


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
    between candidates are paired.
    """
    n = len(next(iter(errors.values())))
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    intervals = {}
    for c in candidates:
        mae = errors[c][draws].mean(axis=1)
        to_best = (errors[c] - errors[best])[draws].mean(axis=1)
        intervals[c] = {"mae": np.percentile(mae, [2.5, 97.5]),
                        "gap": np.percentile((errors[c] - baseline_errors)[draws].mean(axis=1), [2.5, 97.5]),
                        "to_best": np.percentile(to_best, [2.5, 97.5])}
    return intervals
