"""The comparison report (reports/comparison.md) as Markdown, written up from what the stages wrote: evaluate's
metrics and best candidate, the predictions (for bootstrap intervals and the blend), the embed, probe and
finetune stages' measurements. Nothing here loads a model or times anything."""
import numpy as np

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


def recommendations(results, order, best, dimensions, truth, preds, params, schema, embed_meta):
    """Advice that follows from this run's numbers, not fixed text."""
    per_dim = results[best]["per_dimension"]
    hardest = max(dimensions, key=lambda d: per_dim[d]["mae"])
    easiest = min(dimensions, key=lambda d: per_dim[d]["mae"])
    lines = [f"- Hardest dimension for the best candidate: **{hardest}** (MAE {per_dim[hardest]['mae']:.3f}, "
             f"Spearman {rho(per_dim[hardest]['spearman'])}); easiest: {easiest} (MAE {per_dim[easiest]['mae']:.3f})."]
    if len(order) > 1:
        second = next(c for c in order if c != best)
        blend = np.clip((preds[best] + preds[second]) / 2, *schema["score_range"])
        blend_mae = float(np.abs(blend - truth).mean())
        better = blend_mae < results[best]["mae"]
        lines.append(f"- Averaging the two best candidates ({name(best)} and {name(second)}) gives MAE "
                     f"{blend_mae:.3f} against {results[best]['mae']:.3f} for the best alone "
                     f"({blend_mae - results[best]['mae']:+.3f}): an ensemble is "
                     + ("worth trying." if better else "not worth it on this split."))
    dims = {m: embed_meta[m]["dimension"] for m in dict.fromkeys(c[0] for c in order)}
    largest = max(dims.values())
    if len(dims) == 1 or dims[best[0]] == largest:
        others = [k for k in params["embedders"] if k not in dims][:3]
        lines.append(f"- The best embedding ({best[0]}, {dims[best[0]]}-d) is the largest in this grid: a larger "
                     f"model ({', '.join(others) or 'another registry entry'}) is the next thing to try.")
    else:
        lines.append(f"- The best embedding ({best[0]}, {dims[best[0]]}-d) beats a larger one ({largest}-d): "
                     f"model size is not the bottleneck here.")
    share = np.mean([embed_meta[m]["truncated_share"] for m in dims])
    if share > 0.5:
        lines.append(f"- {share:.0%} of the texts are longer than the embedders' token limit: a longer "
                     f"`max_tokens` or head+tail truncation may recover information.")
    return lines


def markdown(run):
    """The report's text. `run` holds what the report stage read (see news_probes.stages.report.load_run)."""
    params, schema, dimensions, splits = run["params"], run["schema"], run["dimensions"], run["splits"]
    baseline, tuning, results, order = run["baseline"], run["tuning"], run["results"], run["order"]
    best, tuned, ci, embed_meta, fits = run["best"], run["tuned"], run["ci"], run["embed_meta"], run["fits"]
    resamples = run["resamples"]
    lines = [
        "# Embedding probes vs fine-tuning: comparison report",
        "",
        f"- Dataset: `{params['data']['raw']}`, {sum(splits[s]['count'] for s in ('train', 'val', 'test'))} "
        f"records, {len(dimensions)} dimensions, score range {schema['score_range']}",
        f"- Splits: train {splits['train']['count']}, validation {splits['val']['count']}, "
        f"test {splits['test']['count']} (seed {params['seed']})",
        f"- Baseline: the fine-tuned adapter `{baseline['adapter']}` (profile `{baseline['profile']}`: LoRA on "
        f"`{baseline['base']}`), MAE {baseline['mae']:.3f} measured on this test split ({baseline['n_test']} "
        f"articles) by the same evaluation code. The study's reference value {baseline['reference_mae']:.2f} "
        f"({baseline['reference_source']}) is shown beside it and enters no gap.",
        "- Embedders: " + "; ".join(
            f"{m} ({meta['dimension']}-d, {meta.get('dtype', '?')} on {meta.get('device', '?')}, "
            f"{meta['max_tokens']} tokens, {meta['truncated_share']:.0%} of texts truncated)"
            for m, meta in embed_meta.items()),
        f"- Intervals: 95% bootstrap over test articles ({resamples} resamples, "
        f"seed {params['seed']}); differences to the best candidate are paired.",
        "",
        "## Summary (sorted by MAE)",
        "",
    ]
    rows = []
    for c in order:
        r, bold = results[c], (lambda s: f"**{s}**") if c == best else (lambda s: s)
        rows.append([bold(c[0]), bold(c[1]), bold(f"{r['mae']:.3f}"), fmt_interval(ci[c]["mae"]),
                     f"{r['rmse']:.3f}", rho(r['spearman']), f"{r['gap']:+.3f}",
                     f"{100 * r['gap'] / baseline['mae']:+.1f}%", fmt_interval(ci[c]["gap"]),
                     "—" if c == best else fmt_interval(ci[c]["to_best"])])
    lines += [table(["model", "probe", "MAE", "MAE 95% CI", "RMSE", "Spearman", "gap", "gap %", "gap 95% CI",
                     "vs best 95% CI"], rows), "",
              "## Baseline", "",
              table(["baseline", "split", "MAE", "MAE 95% CI", "RMSE", "Spearman", "best probe vs it 95% CI"],
                    [[f"fine-tuned: {baseline['profile']} (LoRA on `{baseline['base']}`)", "test (measured)",
                      f"{baseline['mae']:.3f}", fmt_interval(ci[tuned]["mae"]), f"{baseline['rmse']:.3f}",
                      rho(baseline['spearman']), fmt_interval(ci[best]["gap"])],
                     ["the study's reference value", "its own validation run", f"{baseline['reference_mae']:.3f}",
                      "—", "—", "—", "—"]]), ""]

    def best_of(probe_names):
        chosen = [c for c in order if c[1] in probe_names]
        return f"{name(chosen[0])} (MAE {results[chosen[0]]['mae']:.3f})" if chosen else "not in this grid"

    gap = results[best]["gap"]
    tied = [name(c) for c in order if c != best and ci[c]["to_best"][0] <= 0]
    lines += ["## Best candidates", "",
              f"- Best linear probe: {best_of({'ridge'})}",
              f"- Best MLP probe: {best_of({'mlp'})}",
              f"- Best overall: **{name(best)}** (MAE {results[best]['mae']:.3f}, gap {gap:+.3f})",
              f"- Not distinguishable from the best on this split (paired interval includes 0): "
              f"{', '.join(tied) if tied else 'none'}",
              "",
              f"**Result:** the best gap to the measured baseline is {gap:+.3f} MAE: {verdict(gap)}"
              + (f"; its 95% interval {fmt_interval(ci[best]['gap'])} includes 0, so on this split the two are not "
                 f"distinguishable" if ci[best]["gap"][0] <= 0 <= ci[best]["gap"][1] else "")
              + f". Against the study's reference value the same probe's gap would read "
              f"{results[best]['mae'] - baseline['reference_mae']:+.3f}.", "", "## Recommendations", ""]
    lines += recommendations(results, order, best, dimensions, run["truth"], run["preds"], params, schema,
                             embed_meta)
    lines += ["", "## Per-dimension results (top 3 and the baseline)", ""]
    for c in [best, *[c for c in order if c != best][:2], tuned]:
        per = results[c]["per_dimension"]
        lines += [f"### {name(c)}", "", table(["dimension", "MAE", "RMSE", "Spearman"],
                  [[d, f"{per[d]['mae']:.3f}", f"{per[d]['rmse']:.3f}", rho(per[d]['spearman'])]
                   for d in dimensions]), ""]

    lines += ["## Efficiency (measured in this run)", "",
              "Each figure is measured by the stage that loaded the model: encoding speed and single-article "
              "latency by embed, the probe alone (embeddings in, scores out) by probe, the adapter by finetune. "
              "Scoring an article with a probe costs encoding it plus the probe.", ""]
    eff = []
    for model in dict.fromkeys(c[0] for c in order):
        meta = embed_meta[model]
        for probe in [c[1] for c in order if c[0] == model]:
            fit = fits[model][probe]
            eff.append([model, probe, f"{meta.get('dtype', '?')} on {meta.get('device', '?')}",
                        f"{1000 * meta['seconds'] / meta['texts']:.1f} s", f"{meta.get('tokens_per_second', 0):,.0f}",
                        f"{fit['fit_seconds']:.2f} s", f"{meta['latency_ms']['single']:.1f} ms",
                        f"{fit['latency_ms']['single']:.3f} ms", f"{fit['latency_ms']['batched']:.4f} ms",
                        f"{meta['latency_ms']['single'] + fit['latency_ms']['single']:.1f} ms",
                        f"{meta['latency_ms']['batched'] + fit['latency_ms']['batched']:.1f} ms"])
    lines += [table(["model", "probe", "embedder precision", "embedding / 1,000 articles", "tokens / s",
                     "probe training", "encoding, 1 article", "probe alone, 1 article",
                     "probe alone, batched (per article)", "scoring, 1 article",
                     "scoring, batched (per article)"], eff), "",
              f"Fine-tuning (the finetune stage, profile `{tuning['profile']}`), measured in its run:", "",
              table(["baseline", "precision", "trainable parameters", "steps", "training", "per step",
                     "peak memory", "scoring, 1 article", "scoring, batched (per article)"],
                    [[f"fine-tuned: {tuning['profile']}",
                      f"{tuning['dtype']}{' mixed' if tuning['dtype'] != 'float32' else ''} on {tuning['device']}",
                      f"{tuning['trainable_parameters']:,}", tuning["steps"], f"{tuning['fit_seconds']:.0f} s",
                      f"{tuning['seconds_per_step']:.2f} s", f"{tuning['peak_rss_mb']:,.0f} MB RSS",
                      f"{tuning['latency_ms']['single']:.1f} ms", f"{tuning['latency_ms']['batched']:.1f} ms"]]), ""]
    return "\n".join(lines)
