"""Probes: cheap regressors from a frozen embedding to every score dimension at once.

scikit-learn conventions: hyperparameters in __init__, fit(X, y, X_val, y_val) returns self, fitted
attributes end in "_". Predictions are clipped to the score range. save(dir) writes plain files
(probe.json + arrays / weights); load_probe(dir) rebuilds a predictor without refitting.

Sparse inputs (the tfidf embedder): ridge fits them as they are (unstandardised: tf-idf rows are already unit
length, and centring would make them dense); the other probes get a reduced dense form, a truncated SVD fitted
once per seed ensemble on the training split (`dense_components`, default 256).
"""
import copy
import time
from pathlib import Path

import numpy as np

from news_probes.io import InputError, read_json, reading, write_bytes, write_json
from news_probes.log import progress
from news_probes.params import as_list, base_seed, check_names, integer, listed, real

INFO = "probe.json"       # kind, hyperparameters and fit summary; beside it each kind's arrays or weights
REDUCER = "reducer.npz"   # a seed ensemble's truncated SVD for sparse inputs


def is_sparse(X):
    import scipy.sparse
    return scipy.sparse.issparse(X)


class Probe:
    kind = None
    stochastic = True         # its fit depends on the seed; ridge's does not
    default_seeds = 5         # fits averaged into one candidate when `probes.<name>.seeds` is not set

    def __init__(self, score_range=(0.0, 10.0), seed=42):
        self.score_range = tuple(score_range)
        self.seed = seed

    def get_params(self):
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    sparse_input = False      # takes a scipy sparse matrix as it is (ridge); others get SeedEnsemble's dense form

    def _standardise_fit(self, X):
        if is_sparse(X):
            self.mean_, self.scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])
            return
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0

    def _standardise(self, X):
        if is_sparse(X):
            return X
        return (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_

    def predict(self, X):
        return np.clip(self._predict_raw(X), *self.score_range)

    def fit_info(self):
        """What the metrics should record about this fit (chosen hyperparameters, stopping point)."""
        return {}

    def save(self, directory):
        directory = Path(directory)
        arrays = self._arrays()
        write_bytes(directory / "arrays.npz", lambda f: np.savez(f, **arrays))
        self._write_info(directory)

    def _write_info(self, directory):
        """probe.json: what load_probe needs to rebuild this probe (its kind and hyperparameters) and its fit."""
        write_json(Path(directory) / INFO, {"kind": self.kind, "params": self.get_params(), "fit": self.fit_info()})

    @classmethod
    def _restore(cls, directory, params, arrays):
        probe = cls(**params)
        for name in arrays.files:
            setattr(probe, name, arrays[name])
        return probe


class RidgeProbe(Probe):
    """Standardised inputs, RidgeCV over `alphas` (efficient leave-one-out on the training split)."""
    kind = "ridge"
    stochastic, default_seeds = False, 1
    sparse_input = True

    def __init__(self, alphas=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0), score_range=(0.0, 10.0), seed=42):
        super().__init__(score_range, seed)
        self.alphas = listed(alphas, "alphas", lambda a, name: real(a, name, above=0))

    def fit(self, X, y, X_val=None, y_val=None):
        from sklearn.linear_model import RidgeCV
        self._standardise_fit(X)
        model = RidgeCV(alphas=self.alphas).fit(self._standardise(X), y)
        self.coef_, self.intercept_ = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
        self.alpha_ = float(model.alpha_)
        return self

    def _predict_raw(self, X):
        return self._standardise(X) @ self.coef_.T + self.intercept_

    def fit_info(self):
        # An alpha at the end of the grid means the best value may lie beyond it: widen `alphas`.
        edge = "low" if self.alpha_ == min(self.alphas) else "high" if self.alpha_ == max(self.alphas) else None
        return {"alpha": self.alpha_, "alpha_at_grid_edge": edge}

    def _arrays(self):
        return {"mean_": self.mean_, "scale_": self.scale_, "coef_": self.coef_, "intercept_": self.intercept_,
                "alpha_": np.array(self.alpha_)}

    @classmethod
    def _restore(cls, directory, params, arrays):
        probe = super()._restore(directory, params, arrays)
        probe.alpha_ = float(probe.alpha_)
        return probe


class MLPProbe(Probe):
    """Torch MLP (ReLU, dropout), Adam on a Huber (default) or L1 loss, early stopping on validation MAE.

    Huber rather than L1 by default: L1's gradient is the sign of each residual, so an input change in the fourth
    decimal (bf16 embeddings, another CPU) flips it for the articles near zero residual and sends training down
    another path. Huber's gradient is continuous (quadratic within `huber_delta` score units, L1 beyond); the
    measurements are in bench/README.md. The weights of the best validation epoch are kept by a deep copy: a
    shallow state_dict().copy() would hold references to the live tensors and silently return the last epoch.
    """
    kind = "mlp"

    losses = ("huber", "l1")

    def __init__(self, hidden=(256, 128), dropout=0.2, lr=1e-3, epochs=100, patience=10, batch_size=64,
                 weight_decay=0.0, loss="huber", huber_delta=1.0, score_range=(0.0, 10.0), seed=42):
        super().__init__(score_range, seed)
        self.hidden = listed(hidden, "hidden", lambda h, name: integer(h, name, minimum=1))
        self.dropout, self.lr = real(dropout, "dropout", at_least=0, at_most=0.99), real(lr, "lr", at_least=0)
        self.epochs, self.patience = integer(epochs, "epochs", minimum=1), integer(patience, "patience", minimum=1)
        self.batch_size = integer(batch_size, "batch_size", minimum=1)
        self.weight_decay = real(weight_decay, "weight_decay", at_least=0)
        if loss not in self.losses:
            raise ValueError(f"loss must be one of {', '.join(self.losses)}, not {loss!r}")
        self.loss, self.huber_delta = loss, real(huber_delta, "huber_delta", above=0)

    def _network(self, n_in, n_out):
        import torch.nn as nn
        layers, width = [], n_in
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(self.dropout)]
            width = h
        layers.append(nn.Linear(width, n_out))
        return nn.Sequential(*layers)

    def fit(self, X, y, X_val, y_val):
        import torch
        torch.manual_seed(self.seed)
        self._standardise_fit(X)
        Xt = torch.tensor(self._standardise(X), dtype=torch.float32)
        yt = torch.tensor(np.asarray(y), dtype=torch.float32)
        Xv = torch.tensor(self._standardise(X_val), dtype=torch.float32)
        yv = np.asarray(y_val, dtype=np.float64)
        self.n_in_, self.n_out_ = Xt.shape[1], yt.shape[1]
        self.network_ = net = self._network(self.n_in_, self.n_out_)
        optimiser = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = torch.nn.HuberLoss(delta=self.huber_delta) if self.loss == "huber" else torch.nn.L1Loss()
        generator = torch.Generator().manual_seed(self.seed)
        best_mae, best_state, waited = float("inf"), None, 0
        self.history_ = []
        for epoch in range(1, self.epochs + 1):
            net.train()
            abs_error = 0.0   # the training MAE of the batches as trained (dropout on), whatever the loss
            for batch in torch.randperm(len(Xt), generator=generator).split(self.batch_size):
                optimiser.zero_grad()
                predicted = net(Xt[batch])
                loss_fn(predicted, yt[batch]).backward()
                optimiser.step()
                abs_error += (predicted.detach() - yt[batch]).abs().mean().item() * len(batch)
            val_mae = float(np.abs(self._forward(Xv) - yv).mean())
            self.history_.append({"epoch": epoch, "train_mae": abs_error / len(Xt), "val_mae": val_mae})
            if val_mae < best_mae:
                best_mae, best_state, waited = val_mae, copy.deepcopy(net.state_dict()), 0
                self.best_epoch_ = epoch
            else:
                waited += 1
                if waited >= self.patience:
                    break
        net.load_state_dict(best_state)
        self.best_val_mae_ = best_mae
        return self

    def _forward(self, Xt):
        import torch
        self.network_.eval()
        with torch.no_grad():
            return self.network_(Xt).numpy().astype(np.float64)

    def _predict_raw(self, X):
        import torch
        return self._forward(torch.tensor(self._standardise(X), dtype=torch.float32))

    def fit_info(self):
        return {"best_epoch": self.best_epoch_, "epochs_run": len(self.history_),
                "best_val_mae": self.best_val_mae_}

    def save(self, directory):
        import torch
        super().save(directory)
        write_bytes(Path(directory) / "weights.pt", lambda f: torch.save(self.network_.state_dict(), f))

    def _arrays(self):
        return {"mean_": self.mean_, "scale_": self.scale_, "n_in_": np.array(self.n_in_),
                "n_out_": np.array(self.n_out_)}

    @classmethod
    def _restore(cls, directory, params, arrays):
        import torch
        probe = super()._restore(directory, params, arrays)
        probe.network_ = probe._network(int(probe.n_in_), int(probe.n_out_))
        with reading(Path(directory) / "weights.pt"):
            probe.network_.load_state_dict(torch.load(Path(directory) / "weights.pt", weights_only=True))
        return probe


class LightGBMProbe(Probe):
    """One gradient-boosted regressor per dimension, early-stopped on the validation split."""
    kind = "lightgbm"

    def __init__(self, n_estimators=500, learning_rate=0.05, max_depth=6, num_leaves=31,
                 early_stopping_rounds=50, max_bin=255, colsample_bytree=1.0, n_jobs=2, score_range=(0.0, 10.0),
                 seed=42):
        super().__init__(score_range, seed)
        self.n_estimators = integer(n_estimators, "n_estimators", minimum=1)
        self.learning_rate = real(learning_rate, "learning_rate", above=0)
        self.max_depth = integer(max_depth, "max_depth", minimum=-1)        # -1: no limit
        self.num_leaves = integer(num_leaves, "num_leaves", minimum=2)
        self.early_stopping_rounds = integer(early_stopping_rounds, "early_stopping_rounds", minimum=1)
        self.n_jobs = integer(n_jobs, "n_jobs")
        # Histogram bins per feature and share of features per tree: on 1,000-d embeddings these two set the
        # cost of every boosting round.
        self.max_bin = integer(max_bin, "max_bin", minimum=2)
        self.colsample_bytree = real(colsample_bytree, "colsample_bytree", above=0, at_most=1)

    def fit(self, X, y, X_val, y_val):
        import lightgbm as lgb
        y, y_val = np.asarray(y), np.asarray(y_val)
        self.boosters_ = []
        for d in range(y.shape[1]):
            model = lgb.LGBMRegressor(n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                                      max_depth=self.max_depth, num_leaves=self.num_leaves,
                                      max_bin=self.max_bin, colsample_bytree=self.colsample_bytree,
                                      random_state=self.seed, n_jobs=self.n_jobs, deterministic=True,
                                      force_row_wise=True, verbose=-1)
            model.fit(X, y[:, d], eval_X=(X_val,), eval_y=(y_val[:, d],), eval_metric="l1",
                      callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)])
            self.boosters_.append(model.booster_)
        return self

    def _predict_raw(self, X):
        X = np.asarray(X)
        return np.column_stack([b.predict(X, num_iteration=b.best_iteration or None) for b in self.boosters_])

    def fit_info(self):
        return {"best_iterations": [int(b.best_iteration) for b in self.boosters_]}

    def save(self, directory):
        directory = Path(directory)
        self._write_info(directory)
        for d, booster in enumerate(self.boosters_):
            text = booster.model_to_string(num_iteration=booster.best_iteration or None)
            write_bytes(directory / f"booster_{d}.txt", lambda f, t=text: f.write(t.encode()))

    @classmethod
    def load(cls, directory, params):
        import lightgbm as lgb
        probe = cls(**params)
        files = sorted(Path(directory).glob("booster_*.txt"), key=lambda p: int(p.stem.split("_")[1]))
        probe.boosters_ = []
        for f in files:
            with reading(f):
                probe.boosters_.append(lgb.Booster(model_file=str(f)))
        return probe


class SeedEnsemble:
    """One probe kind fitted once per seed; predicts the mean of its members' predictions.

    A stochastic probe's error moves with its seed by as much as the differences between probes, so a
    candidate is the average of several seeds (which is also better than a typical single seed), and the
    members' own predictions stay available to measure that spread."""
    kind = "seed-ensemble"

    def __init__(self, members, dense_components=256):
        if not members:
            raise ValueError("a seed ensemble needs at least one member")
        self.members = list(members)
        self.dense_components = integer(dense_components, "dense_components", minimum=1)
        self.components_ = None     # the truncated SVD's components, when fitted on sparse inputs

    def _dense(self, X):
        """Sparse inputs as the members take them: as they are (ridge), or projected on the SVD components."""
        if not is_sparse(X) or self.members[0].sparse_input:
            return X
        return np.asarray(X @ self.components_.T, dtype=np.float64)

    @property
    def seeds(self):
        return [int(m.seed) for m in self.members]

    @property
    def history_(self):
        """The first seed's epoch curves (for the training-curve plot), where the probe has them."""
        return getattr(self.members[0], "history_", None)

    def fit(self, X, y, X_val, y_val):
        if is_sparse(X) and not self.members[0].sparse_input:
            from sklearn.decomposition import TruncatedSVD
            k = max(1, min(self.dense_components, X.shape[1] - 1, X.shape[0] - 1))
            svd = TruncatedSVD(n_components=k, random_state=self.members[0].seed).fit(X)
            self.components_ = svd.components_.astype(np.float32)
        X, X_val = self._dense(X), self._dense(X_val)
        bar = progress(self.members, enabled=len(self.members) > 1, desc=f"fit {self.members[0].kind}", unit="seed")
        for member in bar:
            member.fit(X, y, X_val, y_val)
        return self

    def member_predictions(self, X):
        """(n_seeds, n_rows, n_dimensions): each seed's clipped predictions."""
        X = self._dense(X)
        return np.stack([m.predict(X) for m in self.members])

    def predict(self, X):
        return self.member_predictions(X).mean(axis=0)

    def fit_info(self):
        return {"seeds": self.seeds, "members": [m.fit_info() for m in self.members]}

    def save(self, directory):
        directory = Path(directory)
        for member in self.members:
            member.save(directory / f"seed-{member.seed}")
        if self.components_ is not None:
            write_bytes(directory / REDUCER, lambda f: np.savez(f, components_=self.components_))
        write_json(directory / INFO, {"kind": self.kind, "seeds": self.seeds, "member_kind": self.members[0].kind,
                                      "dense_components": self.dense_components})


PROBES = {cls.kind: cls for cls in (RidgeProbe, MLPProbe, LightGBMProbe)}


def seed_list(cls, seeds, first):
    """`seeds` as a list: a count n means first .. first + n - 1; a list is taken as it is."""
    if seeds is None:
        seeds = cls.default_seeds
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list)):
        raise ValueError(f"seeds must be a count or a list of seeds, not {seeds!r}")
    if isinstance(seeds, int):
        chosen = list(range(first, first + integer(seeds, "seeds", minimum=1)))
    else:
        chosen = listed(seeds, "seeds", lambda s, name: integer(s, name, minimum=0))
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"seeds must name each seed once: {seeds!r}")
    if len(chosen) > 1 and not cls.stochastic:
        raise ValueError(f"{cls.kind} is deterministic: every seed gives the same fit, so seeds must be 1")
    return chosen


def build_probe(name, hyperparameters, score_range, seed):
    """A seed ensemble of probe `name` (`seeds` among its hyperparameters: a count or a list)."""
    hyperparameters = dict(hyperparameters)
    cls = PROBES[name]
    seeds = seed_list(cls, hyperparameters.pop("seeds", None), seed)
    dense_components = hyperparameters.pop("dense_components", 256)
    return SeedEnsemble([cls(**hyperparameters, score_range=score_range, seed=s) for s in seeds], dense_components)


def selected_probes(params, params_path="params.yaml"):
    """(name, hyperparameters) for each probe named by `probe`, checked against the known kinds."""
    names = as_list(params.get("probe"))
    if not names:
        raise InputError(params_path, "names no probe", field="probe")
    check_names(names, PROBES, params_path, "probe")
    hyper = params.get("probes") or {}
    return [(name, dict(hyper.get(name) or {})) for name in names]


def built_probes(params, score_range, params_path="params.yaml"):
    """Every selected probe built before any is fitted, so that a bad hyperparameter fails at once."""
    built, seed = [], base_seed(params, params_path)
    for name, hyperparameters in selected_probes(params, params_path):
        try:
            built.append((name, build_probe(name, hyperparameters, score_range, seed)))
        except (TypeError, ValueError) as err:
            raise InputError(params_path, str(err), field=f"probes.{name}") from None
    return built


def load_probe(directory):
    """Rebuild a saved probe (or seed ensemble) from its directory; it predicts without refitting."""
    info = read_json(Path(directory) / INFO)
    if info["kind"] == SeedEnsemble.kind:
        ensemble = SeedEnsemble([load_probe(Path(directory) / f"seed-{s}") for s in info["seeds"]],
                                info.get("dense_components", 256))
        if (Path(directory) / REDUCER).is_file():
            with reading(Path(directory) / REDUCER), np.load(Path(directory) / REDUCER) as arrays:
                ensemble.components_ = arrays["components_"]
        return ensemble
    cls = PROBES[info["kind"]]
    if cls is LightGBMProbe:
        return cls.load(directory, info["params"])
    # the arrays (and an MLP's weights.pt) are read inside: a corrupted member fails naming the folder's file
    with reading(Path(directory) / "arrays.npz"), np.load(Path(directory) / "arrays.npz") as arrays:
        return cls._restore(directory, info["params"], arrays)


def timed_fit(probe, X, y, X_val, y_val):
    start = time.perf_counter()
    probe.fit(X, y, X_val, y_val)
    return time.perf_counter() - start
