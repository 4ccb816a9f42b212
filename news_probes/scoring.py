"""Scoring new articles with what the pipeline trained: a probe folder (its embedder + the probe head), an
adapter folder (the base model + the LoRA adapter and score head), or the stacked candidate's folder (its
members' probe folders, weighted). Either folder carries a scoring.json
(news_probes.artifacts) that says which it is, so `load_scorer(folder)` needs no params.yaml and no prepared
data: `dvc pull` of the folder is enough. Output lines are {"id", "scores": {dimension: score}}, scores clipped
to the score range."""
import json
import sys

from news_probes.artifacts import read_scoring
from news_probes.data import model_input
from news_probes.io import write_bytes
from news_probes.records import read_articles


class Scorer:
    """An embedder (`encode`) and a probe head (`predict`), loaded from a probe folder."""

    def __init__(self, probe_dir, dtype="auto"):
        from news_probes.embedders import load_embedder
        from news_probes.probes import load_probe
        info = read_scoring(probe_dir)
        self.model, self.probe_name, self.dimensions = info["model"], info["probe"], info["dimensions"]
        self.probe = load_probe(probe_dir)
        # The precision is this machine's choice, not the one the embeddings were trained with.
        self.embedder = load_embedder(info["embedder"], fitted_dir=probe_dir, model=self.model, dtype=dtype)

    def describe(self):
        return f"{self.model} / {self.probe_name} ({self.embedder.dtype} on {self.embedder.device})"

    def encode(self, texts, show_progress=False):
        return self.embedder.encode(texts, show_progress=show_progress)

    def predict(self, texts):
        """Scores (n_texts × n_dimensions), clipped to the score range by the probe."""
        return self.probe.predict(self.encode(texts))


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
        import numpy as np
        from news_probes.stacking import Stack
        info = read_scoring(stack_dir)
        self.dimensions = info["dimensions"]
        self.names = [m["candidate"] for m in info["members"]]
        self.members = [Scorer(Path(stack_dir) / m["folder"], dtype=dtype) for m in info["members"]]
        # the stage's fitted Stack, restricted to the members with a weight: (members,) shared, (dims, members)
        self.stack = Stack(info["weighting"], info["score_range"])
        weights = np.array([m["weights"] for m in info["members"]]).T
        self.stack.weights_ = weights[0] if info["weighting"] == "shared" else weights

    def describe(self):
        return f"stack of {len(self.members)} candidates ({', '.join(self.names)})"

    def predict(self, texts):
        import numpy as np
        return self.stack.predict(np.stack([member.predict(texts) for member in self.members]))


def load_scorer(folder, dtype="auto"):
    """The scorer of a probe, adapter or stack folder, by the `kind` its scoring.json names."""
    kind = read_scoring(folder)["kind"]
    return {"probe": Scorer, "adapter": AdapterScorer, "stack": StackScorer}[kind](folder, dtype=dtype)


def score_file(scorer, input_path, output_path, batch_size=256, show_progress=True):
    """Score every article of input_path into output_path, batch by batch; returns the number scored. `-` reads
    stdin or writes stdout; a file is written beside its final name and renamed when complete."""
    from tqdm import tqdm
    articles = read_articles(input_path)

    def write(f):
        with tqdm(total=len(articles), desc="Scoring", unit="article", disable=not show_progress) as bar:
            for start in range(0, len(articles), batch_size):
                batch = articles[start:start + batch_size]
                scores = scorer.predict([model_input(a) for a in batch])
                for article, row in zip(batch, scores):
                    line = {"id": article["id"], "scores": dict(zip(scorer.dimensions, map(float, row.round(4))))}
                    f.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
                bar.update(len(batch))

    if str(output_path) == "-":
        write(sys.stdout.buffer)
        sys.stdout.flush()
    else:
        write_bytes(output_path, write)
    return len(articles)
