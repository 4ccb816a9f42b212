"""Scoring new articles with what the pipeline trained: a probe folder (its embedder + the probe head), an
adapter folder (the base model + the LoRA adapter and score head), the stacked candidate's folder (its
members' probe folders, weighted) or the route stage's folder (the hybrid: a screen, then the adapter for the
articles the rule routes). Each folder carries a scoring.json (news_probes.artifacts) that says which it is, so
`load_scorer(folder)` needs no params.yaml and no prepared data: `dvc pull` of the folder is enough. Output
lines are {"id", "scores": {dimension: score}}, scores clipped to the score range; the hybrid's also say
`scored_by`: probe or adapter."""
import json
import sys

from news_probes.artifacts import read_scoring
from news_probes.data import model_input
from news_probes.io import write_bytes
from news_probes.log import progress
from news_probes.records import read_articles


class Scorer:
    """An embedder (`encode`) and a probe head (`predict`), loaded from a probe folder."""

    def __init__(self, probe_dir, dtype="auto", shared=None):
        from news_probes.embedders import load_embedder
        from news_probes.probes import load_probe
        info = read_scoring(probe_dir)
        self.model, self.probe_name, self.dimensions = info["model"], info["probe"], info["dimensions"]
        self.probe = load_probe(probe_dir)
        # The precision is this machine's choice, not the one the embeddings were trained with; `shared` lets the
        # members of a stack use one embedder per model (news_probes.embedders.load_embedder).
        self.embedder = load_embedder(info["embedder"], fitted_dir=probe_dir, model=self.model, dtype=dtype,
                                      shared=shared)

    def describe(self):
        from news_probes.embedders import engine
        e = self.embedder
        return f"{self.model} / {self.probe_name} ({engine(e.dtype, e.backend, e.device)})"

    def encode(self, texts, show_progress=False):
        return self.embedder.encode(texts, show_progress=show_progress)

    def predict(self, texts):
        """Scores (n_texts × n_dimensions), clipped to the score range by the probe."""
        return self.probe.predict(self.encode(texts))

    def predict_members(self, texts):
        """(scores, each seed's predictions (seeds × texts × dimensions), None: the seeds weigh equally)."""
        members = self.probe.member_predictions(self.encode(texts))
        return members.mean(axis=0), members, None


class AdapterScorer:
    """The fine-tuned baseline: base model + LoRA adapter + score head, loaded from an adapter folder."""

    def __init__(self, adapter_dir, dtype="auto"):
        from news_probes.lora import LoRARegressor
        info = read_scoring(adapter_dir)
        self.profile, self.dimensions = info["profile"], info["dimensions"]
        self.regressor = LoRARegressor.load(adapter_dir, dtype=dtype)

    def describe(self):
        return f"adapter {self.profile} ({self.regressor.dtype_} on {self.regressor.device_})"

    def predict(self, texts):
        """Scores (n_texts × n_dimensions), clipped to the score range."""
        return self.regressor.predict(texts)


class StackScorer:
    """The stacked candidate: its members' probe scorers (those with a non-zero weight), their predictions
    weighted as the stack stage fitted them. The member folders must be present beside it (`dvc pull
    models/probes models/stacked`)."""

    def __init__(self, stack_dir, dtype="auto"):
        from pathlib import Path
        from news_probes.stacking import Stack, recorded_weights
        info = read_scoring(stack_dir)
        self.dimensions = info["dimensions"]
        self.names = [m["candidate"] for m in info["members"]]
        shared = {}         # one embedder per model for all members: each text is encoded once per model
        self.members = [Scorer(Path(stack_dir) / m["folder"], dtype=dtype, shared=shared) for m in info["members"]]
        # the stage's fitted Stack, restricted to the members with a weight
        self.stack = Stack(info["weighting"], info["score_range"])
        self.stack.weights_ = recorded_weights(info)

    def describe(self):
        return f"stack of {len(self.members)} candidates ({', '.join(self.names)})"

    def predict(self, texts):
        return self.predict_members(texts)[0]

    def predict_members(self, texts):
        """(scores, each member's predictions (members × texts × dimensions), the stack's weights)."""
        import numpy as np
        members = np.stack([member.predict(texts) for member in self.members])
        return self.stack.predict(members), members, self.stack.weights_


class RouteScorer:
    """The hybrid of the route stage: the screen (a probe or the stacked candidate) scores every text, the adapter
    re-scores the texts the rule routes (news_probes.routing). `predict_routed` also says which texts were routed
    and keeps the time each path took in `timings_`."""

    def __init__(self, screen, adapter, by, threshold, filter_cfg):
        self.screen, self.adapter, self.by, self.threshold, self.filter_cfg = screen, adapter, by, threshold, filter_cfg
        self.dimensions = screen.dimensions

    @classmethod
    def load(cls, route_dir, dtype="auto"):
        from pathlib import Path
        info = read_scoring(route_dir)
        screen = load_scorer(Path(route_dir) / info["screen"], dtype=dtype)
        adapter = AdapterScorer(Path(route_dir) / info["adapter"], dtype=dtype)
        return cls(screen, adapter, info["by"], info["threshold"], info["filter"])

    def describe(self):
        where = "for every article" if self.threshold is None else f"where {self.by} >= {self.threshold:g}"
        return f"{self.screen.describe()}, then {self.adapter.describe()} {where}"

    def predict_routed(self, texts):
        """(scores, routed mask): the screen's scores, the adapter's for the routed texts."""
        import time
        import numpy as np
        from news_probes.routing import hybrid, measure, routed
        start = time.perf_counter()
        if self.by == "uncertainty":
            scores, members, weights = self.screen.predict_members(texts)
        else:
            scores, members, weights = self.screen.predict(texts), None, None
        mask = routed(measure(self.by, scores, self.filter_cfg, members, weights), self.threshold)
        screened = time.perf_counter()
        adapter_scores = np.zeros_like(scores)
        if mask.any():
            adapter_scores[mask] = self.adapter.predict([t for t, m in zip(texts, mask) if m])
        self.timings_ = {"screen_seconds": screened - start, "adapter_seconds": time.perf_counter() - screened,
                         "texts": len(texts), "routed": int(mask.sum())}
        return hybrid(scores, adapter_scores, mask), mask

    def predict(self, texts):
        return self.predict_routed(texts)[0]


def load_scorer(folder, dtype="auto"):
    """The scorer of a probe, adapter or stack folder, by the `kind` its scoring.json names."""
    kind = read_scoring(folder)["kind"]
    return {"probe": Scorer, "adapter": AdapterScorer, "stack": StackScorer,
            "route": RouteScorer.load}[kind](folder, dtype=dtype)


def score_file(scorer, input_path, output_path, batch_size=256, show_progress=True):
    """Score every article of input_path into output_path, batch by batch; returns the number scored. `-` reads
    stdin or writes stdout; a file is written beside its final name and renamed when complete."""
    import numpy as np
    articles = read_articles(input_path)

    def write(f):
        with progress(total=len(articles), enabled=show_progress, desc="score", unit="article") as bar:
            for start in range(0, len(articles), batch_size):
                batch = articles[start:start + batch_size]
                texts = [model_input(a) for a in batch]
                if hasattr(scorer, "predict_routed"):
                    scores, mask = scorer.predict_routed(texts)
                    paths = np.where(mask, "adapter", "probe")
                else:
                    scores, paths = scorer.predict(texts), [None] * len(batch)
                for article, row, path in zip(batch, scores, paths):
                    line = {"id": article["id"], "scores": dict(zip(scorer.dimensions, map(float, row.round(4))))}
                    if path is not None:
                        line["scored_by"] = str(path)        # which path of the hybrid scored the article
                    f.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
                bar.update(len(batch))

    if str(output_path) == "-":
        write(sys.stdout.buffer)
        sys.stdout.flush()
    else:
        write_bytes(output_path, write)
    return len(articles)
