"""route: the hybrid of a probe and the fine-tuned adapter (news_probes.routing). The screen is the candidate
evaluate chose on validation (or `route.screen`); for each threshold of the rule it measures, on validation and
on test, the share of articles routed to the adapter, the hybrid's MAE, RMSE, high-tier recall and the screen's
false-negative rate, and the cost per article from the latencies of both paths measured here; it chooses the
threshold on validation only, writes the hybrid's folder (for `news-probes score`), the chosen point as metrics
and the curve as plot data. It then scores the test split with the hybrid scorer and with the adapter alone and
records both wall times. Beside it, every candidate as the screen (its own threshold chosen on validation, costed
from the embed, probe and finetune stages' latencies), for choosing `route.screen`. Without a baseline
(`finetune.profile: none`) it routes nothing and says so."""
import argparse
import os
import time
from pathlib import Path

import numpy as np

from news_probes.artifacts import (CURVE_COLUMNS, NO_PROFILE, NOT_ROUTED, PREDICTED_SPLITS, SCREEN_COLUMNS,
                                   adapter_dir, candidate_dir, load_predictions, model_file, read_scoring,
                                   save_predictions, save_table, write_scoring)
from news_probes.data import load_schema, load_split, model_input
from news_probes.io import InputError, read_json, run_main, staged_directory, write_json
from news_probes.log import logger, progress
from news_probes.metrics import filter_config
from news_probes.params import STACKED, load_params, scored_candidates
from news_probes.routing import (choose, curve, hybrid, measure, route_config, routed, thresholds_for,
                                 with_costs)
from news_probes.scoring import AdapterScorer, RouteScorer, load_scorer
from news_probes.stacking import recorded_weights
from news_probes.timing import latency

LATENCY_ARTICLES = 8       # test articles scored one at a time by each path, for the single-article costs
TIMING_REPEATS = 2         # batched runs of each path over the test split; the fastest counts


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
    info = read_scoring(screen_dir)
    scores = np.stack([load_predictions(Path(screen_dir) / m["folder"], split, ids)["scores"]
                       for m in info["members"]])
    return scores, recorded_weights(info)


def measure_paths(scorer, texts, repeats=TIMING_REPEATS):
    """Wall times of the hybrid scorer and of the adapter alone on the same texts (batched, as `news-probes score`
    runs them), and single-article latencies of both paths; one warm-up call each first. The two runs alternate
    `repeats` times and the fastest of each counts: on a shared 2-core machine the same adapter pass over the same
    texts was measured anywhere from 145 to 196 ms per article, so a single run of each could invert a ratio."""
    scorer.screen.predict(texts[:2])
    scorer.adapter.predict(texts[:2])
    hybrid_runs, screen_runs, adapter_runs = [], [], []
    for _ in progress(range(repeats), desc="route: time the scorer", unit="run"):
        start = time.perf_counter()
        scores, mask = scorer.predict_routed(list(texts))     # a new list: nothing served from the last run
        hybrid_runs.append(time.perf_counter() - start)
        screen_runs.append(scorer.timings_["screen_seconds"])
        start = time.perf_counter()
        scorer.adapter.predict(texts)
        adapter_runs.append(time.perf_counter() - start)
    hybrid_seconds, screen_seconds, adapter_seconds = min(hybrid_runs), min(screen_runs), min(adapter_runs)
    few = texts[:LATENCY_ARTICLES]
    single = {"probe": latency(scorer.screen.predict, few, repeats=LATENCY_ARTICLES)["single"],
              "adapter": latency(scorer.adapter.predict, few, repeats=LATENCY_ARTICLES)["single"]}
    n = len(texts)
    return scores, mask, {
        "latency_ms": {"probe_path": {"single": round(1000 * single["probe"], 3),
                                      "batched": round(1000 * screen_seconds / n, 3)},
                       "adapter": {"single": round(1000 * single["adapter"], 3),
                                   "batched": round(1000 * adapter_seconds / n, 3)}},
        "scorer": {"articles": n, "routed": int(mask.sum()), "runs": repeats,
                   "hybrid_ms_per_article": round(1000 * hybrid_seconds / n, 3),
                   "adapter_ms_per_article": round(1000 * adapter_seconds / n, 3),
                   "speedup": round(adapter_seconds / hybrid_seconds, 3)}}


def no_route(out_dir, metrics_path, curve_dir):
    reason = "finetune.profile is none: no adapter to route to"
    with staged_directory(out_dir) as staging:
        (staging / NOT_ROUTED).write_text(reason + "\n", encoding="utf-8")
    for split in PREDICTED_SPLITS:
        save_table(curve_dir, split, CURVE_COLUMNS, [])
    save_table(curve_dir, "screens", SCREEN_COLUMNS, [])
    result = {"routing": None, "skipped": reason}
    write_json(metrics_path, result)
    return result


def sweep(screen, screen_dir, ids, truth, adapter, config, filter_cfg):
    """One screen's predictions, routing measure and curve on each split, and the row chosen on validation (None
    when no threshold meets the targets). Raises ValueError where the rule does not apply to the screen."""
    probe, values = {}, {}
    for split in PREDICTED_SPLITS:
        probe[split] = load_predictions(screen_dir, split, ids[split])
        members, weights = screen_members(screen, screen_dir, probe[split], split, ids[split])
        values[split] = measure(config["by"], probe[split]["scores"], filter_cfg, members, weights)
    thresholds = thresholds_for(config["thresholds"], values["val"])
    curves = {split: curve(truth[split], probe[split]["scores"], adapter[split], values[split], thresholds,
                           filter_cfg) for split in PREDICTED_SPLITS}
    return probe, values, curves, choose(curves["val"], config["target"])


def at_threshold(rows, threshold):
    """The curve's row of a threshold; the adapter-alone end for None (every article routed)."""
    if threshold is None:
        return next(r for r in rows if r["point"] == "adapter alone")
    return next(r for r in rows if r["point"] == "threshold" and r["threshold"] == threshold)


def leaf_models(model, combined):
    """The embedders a grid model is computed from: itself, or a combined name's members, recursively."""
    return set().union(*(leaf_models(m, combined) for m in combined[model])) if model in combined else {model}


def stage_latency_ms(screen, stacked_dir, embed_meta_dir, fit_dir, combined):
    """A screen's batched latency per article as the embed and probe stages measured its parts: each embedder
    it needs once, plus each of its probes (the stacked candidate: its members with a weight)."""
    members = [screen] if screen != STACKED else [tuple(m["candidate"].split("/"))
                                                  for m in read_scoring(stacked_dir)["members"]]
    leaves = set().union(*(leaf_models(model, combined) for model, _ in members))
    embedding = sum(read_json(model_file(embed_meta_dir, m))["latency_ms"]["batched"] for m in sorted(leaves))
    return embedding + sum(read_json(model_file(fit_dir, model))[probe]["latency_ms"]["batched"]
                           for model, probe in members)


def compare_screens(params, dirs, ids, truth, adapter, config, filter_cfg):
    """Every candidate as the screen, each with its own threshold chosen on validation, its test figures and its
    cost from the embed, probe and finetune stages' latencies (so all screens are costed alike); candidates the
    rule does not apply to (uncertainty of one seed) are left out."""
    adapter_ms = read_json(dirs["finetune_metrics"])["latency_ms"]["batched"]
    combined = params.get("combined") or {}
    rows = []
    for candidate in progress(scored_candidates(params), desc="route: every candidate as the screen",
                              unit="screen"):
        folder = candidate_dir(dirs["probes"], dirs["stacked"], candidate)
        try:
            _, _, curves, chosen = sweep(candidate, folder, ids, truth, adapter, config, filter_cfg)
        except ValueError:
            continue
        threshold = None if chosen is None else chosen["threshold"]
        test = at_threshold(curves["test"], threshold)
        probe_ms = stage_latency_ms(candidate, dirs["stacked"], dirs["embed_meta"], dirs["fit"], combined)
        costed = with_costs([test], probe_ms, adapter_ms)[0]
        rows.append({"screen": f"{candidate[0]}/{candidate[1]}", "threshold": threshold,
                     "val_share_routed": at_threshold(curves["val"], threshold)["share_routed"],
                     **{k: test[k] for k in ("share_routed", "mae", "recall_high", "false_negative_rate")},
                     "probe_ms": probe_ms, "cost_ms": costed["cost_ms"], "speedup": costed["speedup"]})
    return sorted(rows, key=lambda r: r["cost_ms"])


def route(prepared_dir, dirs, out_dir, metrics_path, curve_dir, params, params_path="params.yaml"):
    """`dirs`: probes, stacked, adapters (folders), summary (evaluate's), embed_meta, fit (the stages' metrics
    folders), finetune_metrics (its metrics.json)."""
    config = route_config(params, params_path)
    profile = (params.get("finetune") or {}).get("profile")
    if profile == NO_PROFILE:
        return no_route(out_dir, metrics_path, curve_dir)
    schema = load_schema(prepared_dir)
    filter_cfg = filter_config(params, schema["dimensions"], params_path)
    rows = {split: load_split(prepared_dir, split) for split in PREDICTED_SPLITS}
    ids = {split: [r["id"] for r in rs] for split, rs in rows.items()}
    truth = {split: np.array([r["labels"] for r in rs], dtype=np.float64) for split, rs in rows.items()}
    screen = screen_candidate(config["screen"], dirs["summary"], params, params_path)
    screen_dir = candidate_dir(dirs["probes"], dirs["stacked"], screen)
    adapter_folder = adapter_dir(dirs["adapters"], profile)
    adapter = {split: load_predictions(adapter_folder, split, ids[split])["scores"] for split in PREDICTED_SPLITS}
    try:
        probe, values, curves, chosen = sweep(screen, screen_dir, ids, truth, adapter, config, filter_cfg)
    except ValueError as err:
        raise InputError(params_path, f"{err}; the screen is {screen[0]}/{screen[1]}", field="route.by") from None
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
    screens = compare_screens(params, dirs, ids, truth, adapter, config, filter_cfg)

    hybrids = {split: hybrid(probe[split]["scores"], adapter[split], masks[split]) for split in PREDICTED_SPLITS}
    with staged_directory(out_dir) as staging:
        for split in PREDICTED_SPLITS:
            save_predictions(staging, split, ids[split], hybrids[split])
        write_scoring(staging, "route", schema["dimensions"], schema["score_range"],
                      screen=os.path.relpath(screen_dir, out_dir), adapter=os.path.relpath(adapter_folder, out_dir),
                      by=config["by"], threshold=threshold, filter=filter_cfg)
    for split in PREDICTED_SPLITS:
        save_table(curve_dir, split, CURVE_COLUMNS, curves[split])
    save_table(curve_dir, "screens", SCREEN_COLUMNS, screens)

    test, val = at_threshold(curves["test"], threshold), at_threshold(curves["val"], threshold)
    ends = {r["point"]: r for r in curves["test"] if r["point"] != "threshold"}
    result = {
        "routing": {"screen": f"{screen[0]}/{screen[1]}", "by": config["by"], "threshold": threshold,
                    "target": config["target"], "target_met": chosen is not None,
                    "share_routed": test["share_routed"], "mae": test["mae"], "rmse": test["rmse"],
                    "recall_high": test["recall_high"], "false_negative_rate": test["false_negative_rate"],
                    "cost_per_article_ms": round(test["cost_ms"], 3), "speedup_vs_adapter": round(test["speedup"], 3),
                    "probe_mae": ends["probe alone"]["mae"], "adapter_mae": ends["adapter alone"]["mae"],
                    "val": {k: val[k] for k in ("share_routed", "mae", "recall_high", "false_negative_rate")}},
        "cost_basis": f"batched: per article of the test split scored in one call per path, the fastest of "
                      f"{TIMING_REPEATS} runs",
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
    parser.add_argument("--embed-meta", required=True, help="directory holding <model>.json from embed (latency)")
    parser.add_argument("--fit-metrics", required=True, help="directory holding <model>.json from probe (latency)")
    parser.add_argument("--finetune-metrics", required=True, help="the finetune stage's metrics.json (latency)")
    parser.add_argument("--out", required=True, help="folder of the hybrid (scoring.json, predictions)")
    parser.add_argument("--metrics", required=True, help="JSON file for the chosen point and the measured times")
    parser.add_argument("--curve", required=True, help="folder for {val,test}.csv (one row per threshold) and "
                                                         "screens.csv (one row per candidate as the screen)")
    args = parser.parse_args()
    dirs = {"probes": args.probes, "stacked": args.stacked, "adapters": args.adapters, "summary": args.summary,
            "embed_meta": args.embed_meta, "fit": args.fit_metrics, "finetune_metrics": args.finetune_metrics}
    result = route(args.prepared, dirs, args.out, args.metrics, args.curve, load_params(args.params), args.params)
    r = result["routing"]
    if r is None:
        logger.info(f"route: {result['skipped']}")
        return
    s = result["scorer"]
    logger.info(f"route: screen {r['screen']}, {r['by']} >= {r['threshold']} (chosen on validation; targets "
                f"{'met' if r['target_met'] else 'not met: every article routed'}): test routed {r['share_routed']:.1%}, "
                f"MAE {r['mae']:.4f} (probe {r['probe_mae']:.4f}, adapter {r['adapter_mae']:.4f}), high-tier recall "
                f"{r['recall_high']:.3f}, {r['cost_per_article_ms']:.1f} ms per article ({r['speedup_vs_adapter']:.2f}x "
                f"the adapter); scorer measured {s['hybrid_ms_per_article']:.1f} vs {s['adapter_ms_per_article']:.1f} ms "
                f"per article ({s['speedup']:.2f}x)")


if __name__ == "__main__":
    run_main(main)
