"""The comparison report (reports/comparison.md) as Markdown, written up from what the stages wrote: evaluate's
metrics and best candidate, the predictions (for bootstrap intervals), the stack stage's weights, the embed,
combine, probe and finetune stages' measurements. Nothing here loads a model or times anything."""
import numpy as np

from news_probes.metrics import TIERS as TIER_NAMES, seed_sd
from news_probes.params import STACKED
from news_probes.plots import name

# The reference study's reading of the gap between the best probe and the fine-tuned model (its thresholds are
# for a positive gap; a negative one means the probe scored better than the adapter on this split).
GAP_VERDICTS = ((0.0, "the probe's MAE is below the fine-tuned baseline's"),
                (0.1, "embeddings nearly match fine-tuning"),
                (0.2, "embeddings give a partial improvement; fine-tuning keeps an edge"),
                (float("inf"), "fine-tuning is recommended"))


def rho(value):
    """A Spearman coefficient; evaluate writes null where it is undefined (a constant prediction)."""
    return "undefined" if value is None else f"{value:.3f}"


def fmt_interval(pair, digits=3):
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(x) for x in row) + " |" for row in rows])


def verdict(gap):
    return next(text for limit, text in GAP_VERDICTS if gap < limit)


def recommendations(results, order, best, dimensions, params, embed_meta):
    """Advice that follows from this run's numbers, not fixed text."""
    per_dim = results[best]["per_dimension"]
    hardest = max(dimensions, key=lambda d: per_dim[d]["mae"])
    easiest = min(dimensions, key=lambda d: per_dim[d]["mae"])
    lines = [f"- Hardest dimension for the best candidate: **{hardest}** (MAE {per_dim[hardest]['mae']:.3f}, "
             f"Spearman {rho(per_dim[hardest]['spearman'])}); easiest: {easiest} (MAE {per_dim[easiest]['mae']:.3f})."]
    if STACKED in order:
        stacked, top = STACKED, next(c for c in order if c != STACKED)
        lines.append(f"- The stacked candidate (weights fitted on validation, its validation MAE cross-fitted) has "
                     f"test MAE {results[stacked]['mae']:.3f} against {results[top]['mae']:.3f} for the best single "
                     f"candidate on validation ({name(top)}): " + (
                         "combining candidates pays here." if results[stacked]["mae"] < results[top]["mae"]
                         else "combining candidates does not pay on this split."))
    dims = {m: embed_meta[m]["dimension"] for m in dict.fromkeys(c[0] for c in order) if m in embed_meta}
    largest = max(dims.values())
    if best[0] not in dims:
        lines.append(f"- The stacked candidate is best: its weights (above) say which embeddings carry it.")
    elif len(dims) == 1 or dims[best[0]] == largest:
        others = [k for k in params["embedders"] if k not in dims][:3]
        lines.append(f"- The best embedding ({best[0]}, {dims[best[0]]}-d) is the largest in this grid: a larger "
                     f"model ({', '.join(others) or 'another registry entry'}) is the next thing to try.")
    else:
        lines.append(f"- The best embedding ({best[0]}, {dims[best[0]]}-d) beats a larger one ({largest}-d): "
                     f"model size is not the bottleneck here.")
    cut = [m for m in dims if embed_meta[m]["truncated_share"] > 0.5 and embed_meta[m].get("truncation") == "head"]
    if cut:
        lines.append(f"- Most texts are longer than the token window of {', '.join(cut)} (cut to the head): "
                     f"`truncation: chunks` or `head+tail` may recover information.")
    return lines


def fmt(value, spec, missing="—"):
    """A number in `spec`, or `missing` where it is undefined (no baseline, no seeds, no positives)."""
    return missing if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, spec)


def describe_embedder(model, meta):
    """One embedder as the report names it: size, precision, what it saw of the texts."""
    kind = meta.get("kind", "sentence-transformers")
    if kind == "tfidf":
        return (f"{model} (TF-IDF word n-grams fitted on the train split in {meta['fit_seconds']:.1f} s, "
                f"{meta['dimension']:,} terms, {meta['bytes'] / 1e6:.1f} MB of sparse matrices, no text cut)")
    if kind == "concat":
        return f"{model} (concatenation of {' and '.join(meta['members'])}, {meta['dimension']:,}-d)"
    windows = meta.get("windows_per_text") or {}
    per_text = (sum(int(k) * v for k, v in windows.items()) / max(1, sum(windows.values()))) if windows else 1
    seen = (f"chunks: {per_text:.2f} windows per text" if meta.get("truncation") == "chunks"
            else f"cut to the {meta.get('truncation', 'head')}")
    return (f"{model} ({meta['dimension']}-d, {precision(meta)}, "
            f"{meta['max_tokens']}-token window; {meta['truncated_share']:.0%} of texts longer, {seen})")


def precision(meta):
    """How an embed stage computed: 'float32 (torch) on cpu', 'int8 (onnx-int8) on cpu'."""
    backend = f" ({meta['backend']})" if meta.get("backend") else ""
    return f"{meta.get('dtype', '?')}{backend} on {meta.get('device', '?')}"


def header(run):
    params, schema, splits, baseline = run["params"], run["schema"], run["splits"], run["baseline"]
    if baseline["measured"]:
        base = (f"- Baseline: the fine-tuned adapter `{baseline['adapter']}` (profile `{baseline['profile']}`: LoRA "
                f"on `{baseline['base']}`), MAE {baseline['mae']:.3f} measured on this test split "
                f"({baseline['n_test']} articles) by the same evaluation code. The study's reference value "
                f"{baseline['reference_mae']:.2f} ({baseline['reference_source']}) is shown beside it and enters no "
                f"gap.")
    else:
        base = (f"- Baseline: **none measured** (`finetune.profile: none`): no adapter was trained, so there is no "
                f"gap to a fine-tuned model. The study's reference value {baseline['reference_mae']:.2f} "
                f"({baseline['reference_source']}) is a reference only, not a measurement on this split.")
    seeds = ", ".join(f"{probe} {n}" for probe, n in dict.fromkeys(
        (c[1], run["results"][c]["seeds"]["n"]) for c in run["order"] if "seeds" in run["results"][c]))
    return [
        "# Embedding probes vs fine-tuning: comparison report",
        "",
        f"- Dataset: `{params['data']['raw']}`, {sum(splits[s]['count'] for s in ('train', 'val', 'test'))} "
        f"records, {len(run['dimensions'])} dimensions, score range {schema['score_range']}",
        f"- Splits: train {splits['train']['count']}, validation {splits['val']['count']}, "
        f"test {splits['test']['count']} (seed {params['seed']})",
        "- Selection: the best candidate is the one with the lowest **validation** MAE; the test split measures "
        "it once (choosing on test would reward the luckiest of many candidates).",
        f"- Seeds: each probe's predictions are the mean of its seeds' ({seeds}); \"seed sd\" is the spread "
        "(standard deviation) of the single seeds' test MAE, what one run alone could have moved.",
        base,
        "- Embedders: " + "; ".join(describe_embedder(m, meta) for m, meta in run["embed_meta"].items()),
        f"- Intervals: 95% bootstrap over test articles ({run['resamples']} resamples, seed {params['seed']}); "
        "gaps and differences to the best candidate are paired.",
        ""]


def summary_section(run):
    results, order, best, ci, baseline = run["results"], run["order"], run["best"], run["ci"], run["baseline"]
    rows = []
    for c in order:
        r, bold = results[c], (lambda s: f"**{s}**") if c == best else (lambda s: s)
        measured = baseline["measured"]
        rows.append([bold(c[0]), bold(c[1]), bold(f"{r['val']['mae']:.3f}"), bold(f"{r['mae']:.3f}"),
                     fmt_interval(ci[c]["mae"]), f"{r['rmse']:.3f}", rho(r['spearman']),
                     fmt(seed_sd(r), ".3f"), fmt(r["gap"], "+.3f"),
                     f"{100 * r['gap'] / baseline['mae']:+.1f}%" if measured else "—",
                     fmt_interval(ci[c]["gap"]) if measured else "—",
                     "—" if c == best else fmt_interval(ci[c]["to_best"])])
    undefined = {name(c): [d for d, m in results[c]["per_dimension"].items() if m["spearman"] is None]
                 for c in order}
    undefined = {c: dims for c, dims in undefined.items() if dims}
    note = ([f"Spearman is the mean over the dimensions where it is defined; it is undefined where the truth or the "
             f"predictions are constant, here for " + "; ".join(f"{c}: {', '.join(dims)}"
                                                               for c, dims in undefined.items()) + ".", ""]
            if undefined else [])
    return ["## Summary (sorted by validation MAE)", "",
            table(["model", "probe", "val MAE", "MAE", "MAE 95% CI", "RMSE", "Spearman", "seed sd", "gap", "gap %",
                   "gap 95% CI", "vs best 95% CI"], rows), "", *note]


def baseline_section(run):
    baseline, ci, best, tuned = run["baseline"], run["ci"], run["best"], run["tuned"]
    reference = ["the study's reference value", "its own validation run", "—", f"{baseline['reference_mae']:.3f}",
                 "—", "—", "—", "—"]
    if baseline["measured"]:
        measured = [f"fine-tuned: {baseline['profile']} (LoRA on `{baseline['base']}`)", "test (measured)",
                    f"{baseline['val']['mae']:.3f}", f"{baseline['mae']:.3f}", fmt_interval(ci[tuned]["mae"]),
                    f"{baseline['rmse']:.3f}", rho(baseline['spearman']), fmt_interval(ci[best]["gap"])]
    else:
        measured = ["none measured (`finetune.profile: none`)", "—", "—", "—", "—", "—", "—", "—"]
    return ["## Baseline", "",
            table(["baseline", "split", "val MAE", "MAE", "MAE 95% CI", "RMSE", "Spearman", "best vs it 95% CI"],
                  [measured, reference]), ""]


def best_section(run):
    results, order, best, ci, baseline = run["results"], run["order"], run["best"], run["ci"], run["baseline"]
    test_best = run["test_best"]

    def best_of(probe_names):
        chosen = [c for c in order if c[1] in probe_names]
        return (f"{name(chosen[0])} (validation MAE {results[chosen[0]]['val']['mae']:.3f}, test MAE "
                f"{results[chosen[0]]['mae']:.3f})" if chosen else "not in this grid")

    r = results[best]
    tied = [name(c) for c in order if c != best and ci[c]["to_best"][0] <= 0]
    picked = ("the test split alone would have picked the same candidate" if test_best == best else
              f"the test split alone would have picked **{name(test_best)}** (test MAE "
              f"{results[test_best]['mae']:.3f}, {results[test_best]['mae'] - r['mae']:+.3f} against the chosen one): "
              f"that difference is the size of the selection effect")
    lines = ["## Best candidates", "",
             f"- Best linear probe: {best_of({'ridge'})}",
             f"- Best MLP probe: {best_of({'mlp'})}",
             f"- Best overall, chosen on validation: **{name(best)}** (validation MAE {r['val']['mae']:.3f}, test "
             f"MAE {r['mae']:.3f}, gap {fmt(r['gap'], '+.3f')}); {picked}.",
             f"- Not distinguishable from the best on the test split (paired interval includes 0): "
             f"{', '.join(tied) if tied else 'none'}", ""]
    spread = seed_sd(r)
    if baseline["measured"]:
        gap = r["gap"]
        result = (f"**Result:** the chosen candidate's gap to the measured baseline is {gap:+.3f} MAE: {verdict(gap)}"
                  + (f"; its 95% interval {fmt_interval(ci[best]['gap'])} includes 0, so on this split the two are "
                     f"not distinguishable" if ci[best]["gap"][0] <= 0 <= ci[best]["gap"][1] else "")
                  + (f"; the gap is smaller than the spread of the candidate's single seeds (sd {spread:.3f}), so "
                     f"one seed alone could have reversed it" if spread and abs(gap) < spread else "")
                  + f". Against the study's reference value the same candidate's gap would read "
                  f"{r['mae'] - baseline['reference_mae']:+.3f}.")
    else:
        result = (f"**Result:** no baseline was measured, so there is no verdict against fine-tuning. The chosen "
                  f"candidate's test MAE is {r['mae']:.3f}; the study's reference value "
                  f"{baseline['reference_mae']:.2f} comes from another split and setting and is not a gap.")
    return lines + [result, ""]


def filter_section(run):
    results, order, best, tuned = run["results"], run["order"], run["best"], run["tuned"]
    some = results[best]["filter"]
    rows = []
    for c in [*order, *([tuned] if tuned else [])]:
        f = results[c]["filter"]
        worst = max(f["bias"], key=lambda d: abs(f["bias"][d]))
        rows.append([name(c), f"{f['weighted_mae']:.3f}", fmt(f["precision"], ".3f"), fmt(f["recall"], ".3f"),
                     fmt(f["f1"], ".3f"), fmt(f["false_negative_rate"], ".3f"), fmt(f["tier_recall"]["high"], ".3f"),
                     fmt(f["ndcg_at_10pct"], ".3f"), f"{worst} {f['bias'][worst]:+.3f}"])
    tiers = some["tiers"]
    lines = ["## Filtering: what a threshold keeps and misses", "",
             f"The weighted score of an article (weights in `filter.weights`) is kept when it reaches "
             f"{some['threshold']:g}; {some['positives']} of the {results[best]['n_test']} test articles truly do. "
             f"Tiers: high from {tiers['high']:g}, medium from {tiers['medium']:g}, low below. Recall is the share of "
             f"truly kept articles the candidate keeps (1 minus the false-negative rate); high-tier recall the share "
             f"of truly high articles it puts in the high tier; NDCG over the top 10% ranked by predicted score; bias "
             f"the dimension with the largest mean signed error (negative: scored too low).", "",
             table(["candidate", "weighted MAE", "precision", "recall", "F1", "false-negative rate",
                    "high-tier recall", "NDCG@10%", "largest bias"], rows), ""]
    for c in [best, *([tuned] if tuned else [])]:
        confusion = results[c]["filter"]["confusion"]
        lines += [f"Tiers of {name(c)} (rows: true tier, columns: predicted tier):", "",
                  table(["true \\ predicted", *TIER_NAMES], [[t, *(confusion[t][p] for p in TIER_NAMES)]
                                                            for t in TIER_NAMES]), ""]
    return lines


def per_dimension_section(run):
    results, order, best, tuned = run["results"], run["order"], run["best"], run["tuned"]
    lines = ["## Per-dimension results (the best, the next two by validation MAE, and the baseline)", ""]
    for c in [best, *[c for c in order if c != best][:2], *([tuned] if tuned else [])]:
        per, bias = results[c]["per_dimension"], results[c]["filter"]["bias"]
        lines += [f"### {name(c)}", "", table(["dimension", "MAE", "RMSE", "Spearman", "bias"],
                  [[d, f"{per[d]['mae']:.3f}", f"{per[d]['rmse']:.3f}", rho(per[d]['spearman']), f"{bias[d]:+.3f}"]
                   for d in run["dimensions"]]), ""]
    return lines


def efficiency_section(run):
    order, embed_meta, fits, tuning = run["order"], run["embed_meta"], run["fits"], run["tuning"]
    lines = ["## Efficiency (measured in this run)", "",
             "Each figure is measured by the stage that loaded the model: encoding speed and single-article "
             "latency by embed, the probe alone (embeddings in, scores out, all its seeds) by probe, the adapter by "
             "finetune. Scoring an article with a probe costs encoding it plus the probe.", ""]
    eff = []
    for model in dict.fromkeys(c[0] for c in order if c[0] in embed_meta):
        meta = embed_meta[model]
        for probe in [c[1] for c in order if c[0] == model]:
            fit = fits[model][probe]
            eff.append([model, probe, precision(meta),
                        f"{1000 * meta['seconds'] / meta['texts']:.1f} s", fmt(meta.get("tokens_per_second"), ",.0f"),
                        f"{fit['fit_seconds']:.2f} s", f"{meta['latency_ms']['single']:.1f} ms",
                        f"{fit['latency_ms']['single']:.3f} ms", f"{fit['latency_ms']['batched']:.4f} ms",
                        f"{meta['latency_ms']['single'] + fit['latency_ms']['single']:.1f} ms",
                        f"{meta['latency_ms']['batched'] + fit['latency_ms']['batched']:.1f} ms"])
    lines += [table(["model", "probe", "embedder precision", "embedding / 1,000 articles", "tokens / s",
                     "probe training (all seeds)", "encoding, 1 article", "probe alone, 1 article",
                     "probe alone, batched (per article)", "scoring, 1 article",
                     "scoring, batched (per article)"], eff), ""]
    if not tuning.get("trained"):
        return lines + ["No adapter was trained in this run (`finetune.profile: none`).", ""]
    return lines + [
        f"Fine-tuning (the finetune stage, profile `{tuning['profile']}`), measured in its run:", "",
        table(["baseline", "precision", "trainable parameters", "steps", "training", "per step",
               "tokens / s (training)", "peak memory", "scoring, 1 article", "scoring, batched (per article)"],
              [[f"fine-tuned: {tuning['profile']}",
                f"{tuning['dtype']}{' mixed' if tuning['dtype'] != 'float32' else ''} on {tuning['device']}",
                f"{tuning['trainable_parameters']:,}", tuning["steps"], f"{tuning['fit_seconds']:.0f} s",
                f"{tuning['seconds_per_step']:.2f} s", fmt(tuning.get("train_tokens_per_second"), ",.0f"),
                f"{tuning['peak_rss_mb']:,.0f} MB RSS",
                f"{tuning['latency_ms']['single']:.1f} ms", f"{tuning['latency_ms']['batched']:.1f} ms"]]), ""]


def stack_section(run):
    """The stack stage's weights: which candidates the validation split found worth combining."""
    stack = run.get("stack") or {}
    if not stack.get("weights"):
        return []
    lines = ["## Stacked candidate", "",
             f"A weighted mean of the candidates' predictions; the weights (non-negative, summing to 1, "
             f"{stack['weighting'].replace('_', ' ')}) minimise the validation MAE; its validation MAE is "
             f"cross-fitted over {stack['folds']} folds of the validation split. No test label is read.", ""]
    weights = stack["weights"]
    if stack["weighting"] == "shared":
        rows = [[c, f"{w:.3f}"] for c, w in sorted(weights.items(), key=lambda kv: -kv[1]) if w > 0]
        return lines + [table(["candidate", "weight"], rows), ""]
    dims = list(weights)
    names = list(weights[dims[0]])
    rows = [[c, *(f"{weights[d][c]:.3f}" for d in dims)] for c in names if any(weights[d][c] > 0 for d in dims)]
    return lines + [table(["candidate", *dims], rows), ""]


def routing_section(run):
    """The route stage's hybrid: the curve on test (thresholds chosen among on validation), the chosen point, and
    the hybrid scorer's measured wall time beside the adapter's."""
    routing, curves = run["routing"], run["routing_curve"]
    lines = ["## Hybrid scoring: the probe first, the adapter where it matters", ""]
    r = routing.get("routing")
    if r is None:
        return lines + [f"Skipped: {routing['skipped']}.", ""]
    lat, scorer = routing["latency_ms"], routing["scorer"]
    rule = ("its weighted score (the filter's weights)" if r["by"] == "weighted_score"
            else "the disagreement of its members (the sd of their predictions, averaged over dimensions)")
    targets = ", ".join(f"{k} {v:g}" for k, v in r["target"].items()) or "none"
    chosen = (f"**{r['by']} >= {r['threshold']:g}**" if r["threshold"] is not None else
              "**every article routed** (no threshold met the targets on validation)")
    lines += [f"The screen **{r['screen']}** scores every article; an article goes on to the adapter when {rule} "
              f"reaches the threshold, and then takes the adapter's scores. Recall (high tier) is the share of truly "
              f"high-tier articles sent to the adapter; the false-negative rate the share of articles truly above the "
              f"filter threshold that stop at the screen. The threshold is chosen on the validation split (targets: "
              f"{targets}; the fewest articles routed among those meeting them): {chosen}. Costs per article are "
              f"the screen's path (embedding included: {lat['probe_path']['batched']:.1f} ms batched, "
              f"{lat['probe_path']['single']:.1f} ms one article at a time) for every article plus the adapter's "
              f"({lat['adapter']['batched']:.1f} ms batched, {lat['adapter']['single']:.1f} ms single) for the routed "
              f"share, measured in the route stage's run.", ""]
    rows = []
    for row in curves["test"]:
        label = f"{row['threshold']:.3f}" if row["point"] == "threshold" else f"({row['point']})"
        is_chosen = row["point"] == "threshold" and row["threshold"] == r["threshold"]
        mark = (lambda x: f"**{x}**") if is_chosen else (lambda x: x)
        rows.append([mark(label), f"{row['share_routed']:.1%}", mark(f"{row['mae']:.3f}"), f"{row['rmse']:.3f}",
                     fmt(row["recall_high"], ".3f"), fmt(row["false_negative_rate"], ".3f"),
                     f"{row['cost_ms']:.1f} ms", f"{row['speedup']:.2f}x", f"{row['cost_single_ms']:.1f} ms",
                     f"{row['speedup_single']:.2f}x"])
    lines += ["Test split, one row per threshold (the ends: the probe alone and the adapter alone):", "",
              table(["threshold", "routed", "MAE", "RMSE", "recall (high tier)", "false-negative rate",
                     "cost, batched", "speedup", "cost, single", "speedup, single"], rows), "",
              f"At the chosen threshold on test: {r['share_routed']:.1%} of articles routed (validation "
              f"{r['val']['share_routed']:.1%}), MAE {r['mae']:.3f} against {r['probe_mae']:.3f} for the probe alone "
              f"and {r['adapter_mae']:.3f} for the adapter alone, high-tier recall {fmt(r['recall_high'], '.3f')}, "
              f"{r['cost_per_article_ms']:.1f} ms per article ({r['speedup_vs_adapter']:.2f}x the adapter alone).",
              "",
              f"Measured: `news-probes score` with the hybrid scored the {scorer['articles']} test articles in "
              f"{scorer['hybrid_ms_per_article']:.1f} ms per article ({scorer['routed']} routed), the adapter alone "
              f"in {scorer['adapter_ms_per_article']:.1f} ms: **{scorer['speedup']:.2f}x** (the fastest of "
              f"{scorer['runs']} alternating runs of each). Its scores differ from "
              f"the hybrid assembled from the stages' saved predictions by at most "
              f"{routing['agreement']['max_abs_diff']:.4f} (batch composition), routing the same articles for "
              f"{routing['agreement']['routed_same']:.1%} of them.", ""]
    screens = [[f"**{x['screen']}**" if x["screen"] == r["screen"] else x["screen"], fmt(x["threshold"], ".3f", "all"),
                f"{x['val_share_routed']:.1%}", f"{x['share_routed']:.1%}", f"{x['mae']:.3f}",
                fmt(x["recall_high"], ".3f"), fmt(x["false_negative_rate"], ".3f"), f"{x['probe_ms']:.2f} ms",
                f"{x['cost_ms']:.1f} ms", f"{x['speedup']:.2f}x"] for x in run["routing_screens"]]
    return lines + [
        "Every candidate as the screen (`route.screen`), each with its own threshold chosen on validation by the same "
        "targets; test figures, cheapest first. These costs add the latencies the embed, probe and finetune stages "
        "measured (batched), so that every screen is costed alike; they differ from the route stage's own "
        "measurement above.", "",
        table(["screen", "threshold", "routed (val)", "routed (test)", "MAE", "recall (high tier)",
               "false-negative rate", "screen cost", "cost per article", "speedup"], screens), ""]


def members(run, candidate):
    """The (model, probe) pairs a candidate runs: itself, or a stack's members with a non-zero weight."""
    if candidate != STACKED:
        return [candidate]
    weights = run["stack"]["weights"]
    per_dimension = weights.values() if run["stack"]["weighting"] != "shared" else [weights]
    used = {c for w in per_dimension for c, value in w.items() if value > 0}
    return [tuple(c.split("/", 1)) for c in sorted(used)]


def scoring_cost(run, candidate):
    """(ms per article batched, seconds of training) of a candidate from what its stages measured: encoding with
    each embedder it uses once (a concatenation is its members, which a stack shares), plus each probe; training
    is the probes' fits (the embedding is not training)."""
    pairs = members(run, candidate)
    combined = run["params"].get("combined") or {}
    embedders = dict.fromkeys(e for m, _ in pairs for e in combined.get(m, [m]))
    encode = sum(run["embed_meta"][e]["latency_ms"]["batched"] for e in embedders)
    probes = sum(run["fits"][m][p]["latency_ms"]["batched"] for m, p in pairs)
    return encode + probes, sum(run["fits"][m][p]["fit_seconds"] for m, p in pairs)


def answer(run):
    """The report's opening: what won, by how much, how sure, at what cost, in five lines."""
    results, best, ci, baseline, tuning = run["results"], run["best"], run["ci"], run["baseline"], run["tuning"]
    r = results[best]
    ms, fit = scoring_cost(run, best)
    lines = [f"1. **What won:** {name(best)}, chosen on validation (MAE {r['val']['mae']:.3f}), test MAE "
             f"{r['mae']:.3f} on {run['splits']['test']['count']} test articles."]
    if baseline["measured"]:
        low, high = ci[best]["gap"]
        sure = ("the interval includes 0: on this split the two are not distinguishable" if low <= 0 <= high else
                f"the interval excludes 0: the {'probe' if high < 0 else 'adapter'} is better on this split")
        lines += [f"2. **By how much:** {r['gap']:+.3f} MAE against the fine-tuned adapter's {baseline['mae']:.3f} "
                  f"({100 * r['gap'] / baseline['mae']:+.1f}%): {verdict(r['gap'])}.",
                  f"3. **How sure:** paired 95% bootstrap interval of the gap {fmt_interval((low, high))}; {sure}."]
    else:
        lines += ["2. **By how much:** no baseline was measured (`finetune.profile: none`): no gap to fine-tuning.",
                  "3. **How sure:** the test MAE's 95% bootstrap interval is " + fmt_interval(ci[best]["mae"]) + "."]
    spread = seed_sd(r)
    lines.append(f"4. **Selection:** the test split alone would have picked "
                 f"{'the same candidate' if run['test_best'] == best else name(run['test_best'])}"
                 + (f"; the single seeds' test MAE spread is sd {spread:.3f}." if spread else "."))
    cost = f"5. **At what cost:** scoring {ms:.1f} ms an article (batched, encoding included), probes trained in {fit:.1f} s"
    if tuning.get("trained"):
        cost += (f"; the adapter {tuning['latency_ms']['batched']:.1f} ms an article and {tuning['fit_seconds']:.0f} s "
                 f"of fine-tuning ({tuning['dtype']} on {tuning['device']})")
    return ["## The answer", "", *lines, cost + ".", ""]


def figure(figures, stem, caption):
    """A Markdown image of a chart the report stage wrote, by a path relative to the report; nothing when absent."""
    return [f"![{caption}]({figures[stem]})", ""] if stem in figures else []


def markdown(run, figures=None):
    """The report's text. `run` holds what the report stage read (see news_probes.stages.report.load_run); its
    `tuned` key is the baseline's row key, None when no baseline was measured. `figures` maps the stem of each
    PNG the stage wrote (plots.write_pngs) to its path relative to the report."""
    figures = figures or {}
    recommendation = recommendations(run["results"], run["order"], run["best"], run["dimensions"], run["params"],
                                     run["embed_meta"])
    header_lines = header(run)
    lines = [*header_lines[:2], *answer(run), "## What was compared", "", *header_lines[2:],
             *summary_section(run), *figure(figures, "gap", "MAE gap of each candidate to the fine-tuned baseline"),
             *baseline_section(run), *figure(figures, "finetune_training", "the adapter's training curves"),
             *stack_section(run), *best_section(run),
             *figure(figures, "predicted_vs_actual", "the best candidate's predictions against the labels"),
             *figure(figures, "abs_error", "distribution of the absolute error per article"),
             "## Recommendations", "", *recommendation, "", *filter_section(run), *per_dimension_section(run),
             *figure(figures, "per_dimension_mae", "per-dimension MAE"),
             *routing_section(run), *figure(figures, "routing", "hybrid routing trade-off"),
             *efficiency_section(run), *figure(figures, "mlp_training", "the MLP probes' training curves")]
    return "\n".join(lines)
