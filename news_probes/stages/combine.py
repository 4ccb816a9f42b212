"""combine@<name>: concatenate two cached embeddings of the grid (`combined: {name: [first, second]}`) split by
split; nothing is re-embedded. Writes the matrices (sparse when a member is), the members' fitted states, and a
meta file like the embed stage's."""
import argparse
import time

from news_probes.artifacts import copy_fitted, load_embeddings, save_embeddings
from news_probes.data import SPLITS, load_split
from news_probes.embedders import concatenate
from news_probes.io import InputError, read_json, run_main, staged_directory, write_json
from news_probes.log import logger
from news_probes.params import combined, load_params


def combine(name, prepared_dir, member_dirs, member_metas, out_dir, meta_path, params, params_path="params.yaml"):
    members = combined(params, params_path).get(name)
    if members is None:
        raise InputError(params_path, f"no combined entry {name!r}", field="combined")
    if len(member_dirs) != len(members) or len(member_metas) != len(members):
        raise InputError(params_path, f"{name!r} has {len(members)} members; given {len(member_dirs)} folders",
                         field=f"combined.{name}")
    start = time.perf_counter()
    counts = {split: len(load_split(prepared_dir, split)) for split in SPLITS}
    with staged_directory(out_dir) as staging:
        dimension = None
        for split in SPLITS:
            matrix = concatenate([load_embeddings(d, split, counts[split]) for d in member_dirs])
            save_embeddings(staging, split, matrix)
            dimension = matrix.shape[1]
        for d in member_dirs:
            copy_fitted(d, staging)
    metas = [read_json(m) for m in member_metas]
    meta = {"kind": "concat", "members": members, "dimension": int(dimension),
            "truncated_share": max(m["truncated_share"] for m in metas),
            "truncation": {member: m.get("truncation") for member, m in zip(members, metas)},
            "hardware": metas[0]["hardware"], "device": metas[0].get("device"), "dtype": metas[0].get("dtype"),
            "texts": metas[0]["texts"], "combine_seconds": round(time.perf_counter() - start, 3),
            # what embedding with every member costs: the efficiency table's figure for this row
            "seconds": round(sum(m["seconds"] for m in metas), 3),
            "latency_ms": {k: round(sum(m["latency_ms"][k] for m in metas), 4) for k in metas[0]["latency_ms"]}}
    write_json(meta_path, meta)
    return meta


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True, help="a key of combined in params")
    parser.add_argument("--prepared", required=True, help="directory written by prepare")
    parser.add_argument("--members", nargs="+", required=True, help="the members' embeddings folders, in order")
    parser.add_argument("--member-meta", nargs="+", required=True, help="the members' embed meta files, in order")
    parser.add_argument("--out", required=True, help="directory for the concatenated {train,val,test} matrices")
    parser.add_argument("--meta", required=True, help="JSON file for dimension and the members' truncation")
    args = parser.parse_args()
    meta = combine(args.model, args.prepared, args.members, args.member_meta, args.out, args.meta,
                   load_params(args.params), args.params)
    logger.info(f"combine {args.model}: {meta['dimension']} columns in {meta['combine_seconds']:.1f} s")


if __name__ == "__main__":
    run_main(main)
