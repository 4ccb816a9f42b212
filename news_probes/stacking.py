"""The stacked candidate: a weighted mean of the grid candidates' predictions, its weights fitted on the
validation split only.

Weights are non-negative and sum to 1 (a convex combination: the stack cannot extrapolate beyond its members,
and a candidate with nothing to add gets weight 0), fitted to minimise the validation MAE exactly, as a linear
program. `shared` (the default) fits one weight per candidate for all dimensions; `per_dimension` one set per
dimension: six times the parameters on the same validation articles, which overfits a small validation split.
The stack's own validation MAE is cross-fitted (each validation fold predicted by weights fitted on the other
folds), so that selection on validation does not favour it for having seen those labels.
"""
import numpy as np

WEIGHTINGS = ("shared", "per_dimension")


def simplex_weights(predictions, truth):
    """Weights (k,) >= 0 summing to 1 minimising mean |sum_k w_k P_k - y| over every cell of `truth`.

    predictions: (k, n, d); truth: (n, d)."""
    import scipy.sparse
    from scipy.optimize import linprog
    k = predictions.shape[0]
    design = predictions.reshape(k, -1).T          # one row per (article, dimension) cell
    target = truth.ravel()
    m = len(target)
    # variables: k weights, then m absolute residuals e; minimise sum(e) with -e <= design @ w - y <= e
    identity = scipy.sparse.identity(m, format="csr")
    a_ub = scipy.sparse.vstack([scipy.sparse.hstack([design, -identity]),
                                scipy.sparse.hstack([-design, -identity])], format="csr")
    b_ub = np.concatenate([target, -target])
    a_eq = scipy.sparse.hstack([np.ones((1, k)), scipy.sparse.csr_matrix((1, m))], format="csr")
    cost = np.concatenate([np.zeros(k), np.full(m, 1.0 / m)])
    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0], bounds=[(0, None)] * (k + m),
                     method="highs")
    if not result.success:
        raise RuntimeError(f"stacking weights: the linear program failed ({result.message})")
    weights = np.clip(result.x[:k], 0.0, None)
    return weights / weights.sum()


class Stack:
    """fit(P_val, y_val) -> self; predict(P) -> the weighted mean, clipped to the score range.

    P: (k candidates, n articles, d dimensions). weights_: (k,) shared, or (d, k) per dimension."""

    def __init__(self, weighting="shared", score_range=(0.0, 10.0)):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weights must be one of {WEIGHTINGS}, not {weighting!r}")
        self.weighting, self.score_range = weighting, tuple(score_range)

    def fit(self, predictions, truth):
        if self.weighting == "shared":
            self.weights_ = simplex_weights(predictions, truth)
        else:
            self.weights_ = np.stack([simplex_weights(predictions[:, :, [d]], truth[:, [d]])
                                      for d in range(truth.shape[1])])
        return self

    def predict(self, predictions):
        if self.weights_.ndim == 1:
            blended = np.tensordot(self.weights_, predictions, axes=1)
        else:
            blended = np.einsum("dk,knd->nd", self.weights_, predictions)
        return np.clip(blended, *self.score_range)


def cross_fitted(stack, predictions, truth, folds, seed):
    """Predictions for every validation article from a stack fitted on the other folds (folds >= 2)."""
    order = np.random.default_rng(seed).permutation(truth.shape[0])
    out = np.empty_like(truth, dtype=np.float64)
    for held in np.array_split(order, folds):
        kept = np.setdiff1d(order, held)
        fold = type(stack)(stack.weighting, stack.score_range).fit(predictions[:, kept], truth[kept])
        out[held] = fold.predict(predictions[:, held])
    return out


def recorded_weights(info):
    """The weights of the stack stage's scoring.json `info`, as Stack.weights_ holds them, over the members it
    lists (those with a weight): (members,) shared, (dimensions, members) per dimension."""
    weights = np.array([m["weights"] for m in info["members"]]).T
    return weights[0] if info["weighting"] == "shared" else weights
