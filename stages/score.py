"""score: score new articles with a trained embedder + probe pair, or with the fine-tuned adapter (JSONL in, out).

    python stages/score.py --model all-MiniLM-L6-v2 --probe ridge --input new.jsonl --output scored.jsonl
    python stages/score.py --adapter models/adapters/smollm2-cpu --input new.jsonl --output scored.jsonl

Reads models/probes/<model>/<probe>/ and the scoring.json beside it (the embedder's registry entry, the
dimension names, the score range), or an adapter folder with its scoring.json (the base model is loaded from
its source and the adapter applied), so it needs no params.yaml and no prepared data: `dvc pull` of the folder
is enough. Input records take the shapes prepare accepts (labels are ignored, not required); each output
line is {"id", "scores": {dimension: score}}, scores clipped to the range. Output is written beside the target
and renamed when complete.
"""
import argparse
import json
import time
from pathlib import Path

from common import InputError, read_json, read_jsonl, run_main, write_bytes
from embedders import load_embedder, model_input
from hardware import MIXED_DTYPES
from prepare import article_fields, claim_id
from probes import load_probe


def scoring_info(path, remedy):
    """The scoring.json a probe or finetune stage writes beside its output: all that scoring needs, no params."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"missing: {remedy}")
    return read_json(path)


class Scorer:
    """An embedder (`encode`) and a probe head (`predict`), loaded from a probe stage's output folder."""

    def __init__(self, probe_dir, embedder=None, dtype="auto"):
        probe_dir = Path(probe_dir)
        info = scoring_info(probe_dir.parent / "scoring.json", "run the probe stage (or dvc pull) for this model")
        self.model, self.dimensions = info["model"], info["dimensions"]
        self.probe = load_probe(probe_dir)
        # The precision is this machine's choice, not the one the embeddings were trained with.
        self.embedder = embedder or load_embedder({**info["embedder"], "dtype": dtype})

    def encode(self, texts, show_progress=False):
        return self.embedder.encode(texts, show_progress=show_progress)

    def predict(self, texts):
        """Scores (n_texts × n_dimensions), clipped to the score range by the probe."""
        return self.probe.predict(self.encode(texts))


class AdapterScorer:
    """The fine-tuned baseline: base model + LoRA adapter + score head, from a finetune stage's output folder."""

    def __init__(self, adapter_dir, dtype="auto"):
        from finetune import LoRARegressor
        adapter_dir = Path(adapter_dir)
        info = scoring_info(adapter_dir / "scoring.json", "run the finetune stage (or dvc pull) for this profile")
        self.profile, self.dimensions = info["profile"], info["dimensions"]
        self.regressor = LoRARegressor.load(adapter_dir, dtype=dtype)

    def predict(self, texts):
        """Scores (n_texts × n_dimensions), clipped to the score range."""
        return self.regressor.predict(texts)


def read_articles(path):
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "input file not found")
    articles, seen = [], {}
    for number, obj in read_jsonl(path):
        article = article_fields(number, obj, path)
        claim_id(seen, article["id"], number, path)
        articles.append(article)
    if not articles:
        raise InputError(path, "no records")
    return articles


def score_file(scorer, input_path, output_path, batch_size=256, show_progress=True):
    """Score every article of input_path into output_path, batch by batch; returns the number scored."""
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

    write_bytes(output_path, write)
    return len(articles)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model trained by the pipeline (a key of `models`)")
    parser.add_argument("--probe", help="ridge, mlp or lightgbm")
    parser.add_argument("--probes", default="models/probes", help="the probe stage's output root")
    parser.add_argument("--adapter", help="instead of --model/--probe: a finetune output folder "
                                          "(models/adapters/<profile>)")
    parser.add_argument("--input", required=True, help="JSONL of articles (id, title, content or text)")
    parser.add_argument("--output", required=True, help="JSONL of {id, scores}")
    parser.add_argument("--batch-size", type=int, default=256, help="articles scored per call")
    parser.add_argument("--dtype", default="auto", choices=MIXED_DTYPES,
                        help="precision to score in (auto: bfloat16 only where this machine computes it natively)")
    args = parser.parse_args()
    if bool(args.adapter) == bool(args.model and args.probe):
        parser.error("give either --model and --probe, or --adapter")
    start = time.perf_counter()
    if args.adapter:
        scorer = AdapterScorer(args.adapter, args.dtype)
        what = f"adapter {args.adapter} ({scorer.regressor.dtype_} on {scorer.regressor.device_})"
    else:
        probe_dir = Path(args.probes) / args.model / args.probe
        if not (probe_dir / "probe.json").is_file():
            raise InputError(probe_dir, "no trained probe here: run `dvc repro` (or `dvc pull`) for this model and probe")
        scorer = Scorer(probe_dir, dtype=args.dtype)
        what = f"{args.model} / {args.probe} ({scorer.embedder.dtype} on {scorer.embedder.device})"
    loaded = time.perf_counter()
    n = score_file(scorer, args.input, args.output, args.batch_size)
    seconds = time.perf_counter() - loaded
    print(f"scored {n} articles with {what} in {seconds:.1f} s ({1000 * seconds / n:.1f} ms per article; "
          f"loading took {loaded - start:.1f} s) -> {args.output}")


if __name__ == "__main__":
    run_main(main)
