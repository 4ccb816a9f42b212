"""prepare: validate the raw records (either accepted shape, news_probes.records), normalise them to one schema,
split train/val/test; writes {"id", "title", "text", "labels"} per split and schema.json (news_probes.data)."""
import argparse

from news_probes.data import write_prepared
from news_probes.io import InputError, run_main, staged_directory, write_json
from news_probes.log import logger
from news_probes.params import base_seed, field_check, integer, load_params, real
from news_probes.records import infer_range, load_records, split_records, split_stats


def prepare(raw, out_dir, metrics_path, params, params_path="params.yaml"):
    data = params["data"]
    seed = base_seed(params, params_path)
    val_fraction = field_check(params_path, "data.val_fraction", real, data.get("val_fraction"), above=0, at_most=0.9)
    test_fraction = field_check(params_path, "data.test_fraction", real, data.get("test_fraction"), above=0,
                                at_most=0.9)
    if val_fraction + test_fraction >= 1:
        raise InputError(params_path, "val_fraction and test_fraction must sum below 1", field="data")
    strata = field_check(params_path, "data.strata", integer, data.get("strata", 5), minimum=1)
    pinned = data.get("score_range", "auto")
    if pinned != "auto" and not (isinstance(pinned, list) and len(pinned) == 2 and pinned[0] < pinned[1]):
        raise InputError(params_path, "must be auto or [low, high]", field="data.score_range")
    records, dimensions = load_records(raw, None if pinned == "auto" else pinned)
    score_range = infer_range(records) if pinned == "auto" else [float(v) for v in pinned]
    splits = split_records(records, val_fraction, test_fraction, strata, seed, raw)

    with staged_directory(out_dir) as staging:
        write_prepared(staging, splits, dimensions, score_range)
    write_json(metrics_path, {"dimensions": len(dimensions), "score_range": score_range,
                              **{split: split_stats(rows, dimensions) for split, rows in splits.items()}})
    return splits, dimensions, score_range


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", required=True, help="raw JSONL dataset")
    parser.add_argument("--out", required=True, help="directory for {train,val,test}.jsonl and schema.json")
    parser.add_argument("--metrics", required=True, help="JSON file for split counts and score statistics")
    args = parser.parse_args()
    splits, dimensions, score_range = prepare(args.raw, args.out, args.metrics, load_params(args.params), args.params)
    sizes = ", ".join(f"{s} {len(r)}" for s, r in splits.items())
    logger.info(f"prepare: {len(dimensions)} dimensions, range {score_range}, {sizes}")


if __name__ == "__main__":
    run_main(main)
