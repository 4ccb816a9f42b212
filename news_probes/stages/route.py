"""route: the hybrid of a probe and the fine-tuned adapter (news_probes.routing). The screen is the candidate
evaluate chose on validation (or `route.screen`); for each threshold of the rule it measures, on validation and
on test, the share of articles routed to the adapter, the hybrid's MAE, RMSE, high-tier recall and the screen's
false-negative rate, and the cost per article from the latencies of both paths measured here; it chooses the
threshold on validation only, writes the hybrid's folder (for `news-probes score`), the chosen point as metrics
and the curve as plot data. It then scores the test split with the hybrid scorer and with the adapter alone and
records both wall times. Without a baseline (`finetune.profile: none`) it routes nothing and says so."""
import argparse
import os
import time
from pathlib import Path

import numpy as np

from news_probes.artifacts import (NO_PROFILE, NOT_ROUTED, PREDICTED_SPLITS, adapter_dir, candidate_dir,
                                   load_predictions, read_scoring, save_curve, save_predictions, write_scoring)
from news_probes.data import load_schema, load_split, model_input
from news_probes.io import InputError, read_json, run_main, staged_directory, write_json
from news_probes.metrics import filter_config
from news_probes.params import STACKED, load_params, scored_candidates
from news_probes.routing import (choose, curve, hybrid, measure, route_config, routed, thresholds_for,
                                 with_costs)
from news_probes.scoring import AdapterScorer, RouteScorer, load_scorer
from news_probes.timing import latency

LATENCY_ARTICLES = 8       # test articles scored one at a time by each path, for the single-article costs


def screen_candidate(name, summary_path, params, params_path):
    """(model, probe) of the screen: evaluate's choice on validation for `best`, else the named candidate."""
    if name == "best":
        best = read_json(summary_path)["best"]
        return best["model"], best["probe"]
    known = {f"{m}/{p}": (m, p) for m, p in scored_candidates(params)}
    if name not in known:
        raise InputError(params_path, f"unknown candidate {name!r}; `best` or one of: {', '.join(known)}",
                         field="route.screen")
    return known[name]


def screen_members(screen, screen_dir, predictions, split, ids):
    """(member predictions, weights) behind the screen's scores: its seeds (equal weights), or for the stacked
    candidate its members' predictions and the stack's weights."""
    if screen != STACKED:
        return predictions["seed_scores"], None
    members = read_scoring(screen_dir)["members"]
    scores = np.stack([load_predictions(Path(screen_dir) / m["folder"], split, ids)["scores"] for m in members])
    weights = np.array([m["weights"] for m in members]).T          # (1 or dimensions, members)
    return scores, weights[0] if len(weights) == 1 else weights


def measure_paths(scorer, texts):
    """Wall times of the hybrid scorer and of the adapter alone on the same texts (batched, as `news-probes score`
    runs them), and single-article latencies of both paths; one warm-up call each first."""
    scorer.screen.predict(texts[:2])
    scorer.adapter.predict(texts[:2])
    start = time.perf_counter()
    scores, mask = scorer.predict_routed(texts)
    hybrid_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scorer.adapter.predict(texts)
    adapter_seconds = time.perf_counter() - start
    few = texts[:LATENCY_ARTICLES]
    single = {"probe": latency(scorer.screen.predict, few, repeats=LATENCY_ARTICLES)["single"],
              "adapter": latency(scorer.adapter.predict, few, repeats=LATENCY_ARTICLES)["single"]}
    n = len(texts)
    return scores, mask, {
        "latency_ms": {"probe_path": {"single": round(1000 * single["probe"], 3),
                                      "batched": round(1000 * scorer.timings_["screen_seconds"] / n, 3)},
                       "adapter": {"single": round(1000 * single["adapter"], 3),
                                   "batched": round(1000 * adapter_seconds / n, 3)}},
        "scorer": {"articles": n, "routed": int(mask.sum()),
                   "hybrid_ms_per_article": round(1000 * hybrid_seconds / n, 3),
                   "adapter_ms_per_article": round(1000 * adapter_seconds / n, 3),
                   "speedup": round(adapter_seconds / hybrid_seconds, 3)}}


def no_route(out_dir, metrics_path, curve_dir):
    reason = "finetune.profile is none: no adapter to route to"
    with staged_directory(out_dir) as staging:
        (staging / NOT_ROUTED).write_text(reason + "\n", encoding="utf-8")
    for split in PREDICTED_SPLITS:
        save_curve(curve_dir, split, [])
    result = {"routing": None, "skipped": reason}
    write_json(metrics_path, result)
    return result


def route(prepared_dir, probes_dir, stacked_dir, adapters_dir, summary_path, out_dir, metrics_path, curve_dir,
          params, params_path="params.yaml"):
    config = route_config(params, params_path)
    profile = (params.get("finetune") or {}).get("profile")
    if profile == NO_PROFILE:
        return no_route(out_dir, metrics_path, curve_dir)
    schema = load_schema(prepared_dir)
    filter_cfg = filter_config(params, schema["dimensions"], params_path)
    rows = {split: load_split(prepared_dir, split) for split in PREDICTED_SPLITS}
    ids = {split: [r["id"] for r in rs] for split, rs in rows.items()}
    truth = {split: np.array([r["labels"] for r in rs], dtype=np.float64) for split, rs in rows.items()}
    screen = screen_candidate(config["screen"], summary_path, params, params_path)
    screen_dir, adapter_folder = candidate_dir(probes_dir, stacked_dir, screen), adapter_dir(adapters_dir, profile)

    probe, adapter, values = {}, {}, {}
    for split in PREDICTED_SPLITS:
        probe[split] = load_predictions(screen_dir, split, ids[split])
        adapter[split] = load_predictions(adapter_folder, split, ids[split])["scores"]
        members, weights = screen_members(screen, screen_dir, probe[split], split, ids[split])
        try:
            values[split] = measure(config["by"], probe[split]["scores"], filter_cfg, members, weights)
        except ValueError as err:
            raise InputError(params_path, f"{err}; the screen is {screen[0]}/{screen[1]}", field="route.by") from None
    thresholds = thresholds_for(config["thresholds"], values["val"])
    curves = {split: curve(truth[split], probe[split]["scores"], adapter[split], values[split], thresholds,
                           filter_cfg) for split in PREDICTED_SPLITS}
    chosen = choose(curves["val"], config["target"])
    threshold = None if chosen is None else chosen["threshold"]
    masks = {split: routed(values[split], threshold) for split in PREDICTED_SPLITS}

    # The hybrid as `news-probes score` runs it, timed beside the adapter alone on the test split.
    scorer = RouteScorer(load_scorer(screen_dir), AdapterScorer(adapter_folder), config["by"], threshold, filter_cfg)
    texts = [model_input(r) for r in rows["test"]]
    live_scores, live_mask, measured = measure_paths(scorer, texts)
    lat = measured["latency_ms"]
    for split in PREDICTED_SPLITS:
        curves[split] = with_costs(curves[split], lat["probe_path"]["batched"], lat["adapter"]["batched"])
        curves[split] = with_costs(curves[split], lat["probe_path"]["single"], lat["adapter"]["single"], "_single")
        curves[split].sort(key=lambda r: (r["share_routed"], r["point"] != "probe alone", -(r["threshold"] or 0)))

    hybrids = {split: hybrid(probe[split]["scores"], adapter[split], masks[split]) for split in PREDICTED_SPLITS}
    with staged_directory(out_dir) as staging:
        for split in PREDICTED_SPLITS:
            save_predictions(staging, split, ids[split], hybrids[split])
        write_scoring(staging, "route", schema["dimensions"], schema["score_range"],
                      screen=os.path.relpath(screen_dir, out_dir), adapter=os.path.relpath(adapter_folder, out_dir),
                      by=config["by"], threshold=threshold, filter=filter_cfg)
    for split in PREDICTED_SPLITS:
        save_curve(curve_dir, split, curves[split])

    def at_threshold(split):
        return next(r for r in curves[split] if r["point"] == "threshold" and r["threshold"] == threshold) \
            if threshold is not None else next(r for r in curves[split] if r["point"] == "adapter alone")

    test, val = at_threshold("test"), at_threshold("val")
    ends = {r["point"]: r for r in curves["test"] if r["point"] != "threshold"}
    result = {
        "routing": {"screen": f"{screen[0]}/{screen[1]}", "by": config["by"], "threshold": threshold,
                    "target": config["target"], "target_met": chosen is not None,
                    "share_routed": test["share_routed"], "mae": test["mae"], "rmse": test["rmse"],
                    "recall_high": test["recall_high"], "false_negative_rate": test["false_negative_rate"],
                    "cost_per_article_ms": round(test["cost_ms"], 3), "speedup_vs_adapter": round(test["speedup"], 3),
                    "probe_mae": ends["probe alone"]["mae"], "adapter_mae": ends["adapter alone"]["mae"],
                    "val": {k: val[k] for k in ("share_routed", "mae", "recall_high", "false_negative_rate")}},
        "cost_basis": "batched: per article of the test split scored in one call per path",
        **measured,
        # the live scorer against the hybrid computed from the stages' saved predictions
        "agreement": {"routed_same": float(np.mean(live_mask == masks["test"])),
                      "max_abs_diff": float(np.abs(live_scores - hybrids["test"]).max())},
    }
    write_json(metrics_path, result)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True, help="directory written by prepare")
    parser.add_argument("--probes", required=True, help="directory holding <model>/<probe>/ from probe")
    parser.add_argument("--stacked", required=True, help="the stack stage's folder")
    parser.add_argument("--adapters", required=True, help="directory holding <profile>/ from finetune")
    parser.add_argument("--summary", required=True, help="evaluate's summary (the candidate chosen on validation)")
    parser.add_argument("--out", required=True, help="folder of the hybrid (scoring.json, predictions)")
    parser.add_argument("--metrics", required=True, help="JSON file for the chosen point and the measured times")
    parser.add_argument("--curve", required=True, help="folder for {val,test}.csv, one row per threshold")
    args = parser.parse_args()
    result = route(args.prepared, args.probes, args.stacked, args.adapters, args.summary, args.out, args.metrics,
                   args.curve, load_params(args.params), args.params)
    r = result["routing"]
    if r is None:
        print(f"route: {result['skipped']}")
        return
    s = result["scorer"]
    print(f"route: screen {r['screen']}, {r['by']} >= {r['threshold']} (chosen on validation; targets "
          f"{'met' if r['target_met'] else 'not met: every article routed'}): test routed {r['share_routed']:.1%}, "
          f"MAE {r['mae']:.4f} (probe {r['probe_mae']:.4f}, adapter {r['adapter_mae']:.4f}), high-tier recall "
          f"{r['recall_high']:.3f}, {r['cost_per_article_ms']:.1f} ms per article ({r['speedup_vs_adapter']:.2f}x "
          f"the adapter); scorer measured {s['hybrid_ms_per_article']:.1f} vs {s['adapter_ms_per_article']:.1f} ms "
          f"per article ({s['speedup']:.2f}x)")


if __name__ == "__main__":
    run_main(main)
