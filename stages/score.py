"""score: score new articles with a trained embedder + probe pair (JSONL in, JSONL out).

    python stages/score.py --model all-MiniLM-L6-v2 --probe ridge --input new.jsonl --output scored.jsonl

Reads models/probes/<model>/<probe>/ and the scoring.json beside it (the embedder's registry entry, the
dimension names, the score range), so it needs no params.yaml and no prepared data: `dvc pull` of the probe
folder is enough. Input records take the shapes prepare accepts (labels are ignored, not required); each output
line is {"id", "scores": {dimension: score}}, scores clipped to the range. Output is written beside the target
and renamed when complete.
"""
import argparse
import json
import time
from pathlib import Path


from common import InputError, read_json, read_jsonl, run_main, write_bytes
from embedders import load_embedder, model_input
from prepare import article_fields, claim_id
from probes import load_probe


class Scorer:
    """An embedder (`encode`) and a probe head (`predict`), loaded from a probe stage's output folder."""

    def __init__(self, probe_dir, embedder=None):
        probe_dir = Path(probe_dir)
        info_path = probe_dir.parent / "scoring.json"
        if not info_path.is_file():
            raise InputError(info_path, "missing: run the probe stage (or dvc pull) for this model")
        info = read_json(info_path)
        self.model, self.dimensions = info["model"], info["dimensions"]
        self.probe = load_probe(probe_dir)
        self.embedder = embedder or load_embedder(info["embedder"])

    def encode(self, texts, show_progress=False):
        return self.embedder.encode(texts, show_progress=show_progress)

    def predict(self, texts):
        """Scores (n_texts × n_dimensions), clipped to the score range by the probe."""
        return self.probe.predict(self.encode(texts))


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


def latency(predict, items, repeats=20):
    """Seconds per item of predict(items[i:i+1]) one item at a time, and of predict(items) in one batch.

    Used for the scorer (texts -> scores) and for a probe alone (embeddings -> scores)."""
    predict(items[:1])                             # warm-up: first call pays one-off allocations
    start = time.perf_counter()
    for i in range(repeats):
        predict(items[i % len(items):i % len(items) + 1])
    single = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    predict(items)
    return {"single": single, "batched": (time.perf_counter() - start) / len(items)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model trained by the pipeline (a key of `models`)")
    parser.add_argument("--probe", required=True, help="ridge, mlp or lightgbm")
    parser.add_argument("--probes", default="models/probes", help="the probe stage's output root")
    parser.add_argument("--input", required=True, help="JSONL of articles (id, title, content or text)")
    parser.add_argument("--output", required=True, help="JSONL of {id, scores}")
    parser.add_argument("--batch-size", type=int, default=256, help="articles embedded per call")
    args = parser.parse_args()
    probe_dir = Path(args.probes) / args.model / args.probe
    if not (probe_dir / "probe.json").is_file():
        raise InputError(probe_dir, "no trained probe here: run `dvc repro` (or `dvc pull`) for this model and probe")
    scorer = Scorer(probe_dir)
    start = time.perf_counter()
    n = score_file(scorer, args.input, args.output, args.batch_size)
    seconds = time.perf_counter() - start
    print(f"scored {n} articles with {args.model} / {args.probe} in {seconds:.1f} s "
          f"({1000 * seconds / n:.1f} ms per article, {scorer.embedder.dtype} on {scorer.embedder.device}) "
          f"-> {args.output}")


if __name__ == "__main__":
    run_main(main)
