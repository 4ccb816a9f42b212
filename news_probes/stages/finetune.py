"""finetune: train the LoRA baseline (news_probes.lora) of the profile named by `finetune.profile` on the
prepared train split, validating on the val split; write the adapter, scoring.json and the validation and test
predictions into models/adapters/<profile>/ (scored by evaluate with the probes' code); with `none`, train
nothing and say so. Loss per step and validation MAE go to
DVCLive (metrics/finetune/), with timings, latency and peak memory in its metrics.json."""
import argparse
import time

import numpy as np

from news_probes.artifacts import NO_PROFILE, PREDICTED_SPLITS, save_predictions, write_no_baseline, write_scoring
from news_probes.data import SPLITS, load_schema, load_split, model_input
from news_probes.io import InputError, run_main, staged_directory, write_json
from news_probes.log import logger, progress
from news_probes.lora import LoRARegressor, finetune_profile
from news_probes.params import base_seed, load_params
from news_probes.timing import latency_ms, peak_memory_mb

LATENCY_ARTICLES = 16     # test articles scored one at a time, then in one batch


def no_finetune(out_dir, live_dir):
    """`finetune.profile: none`: the stage's outputs say that no baseline was trained (DVC needs them to exist)."""
    summary = {"profile": NO_PROFILE, "trained": False, "hardware": None}
    with staged_directory(out_dir) as staging, staged_directory(live_dir) as live_staging:
        write_no_baseline(staging, "finetune.profile is none: no adapter was trained, so there is no measured baseline")
        (live_staging / "plots" / "metrics").mkdir(parents=True)
        write_json(live_staging / "metrics.json", summary)
    return summary


def finetune(prepared_dir, out_dir, live_dir, params, params_path="params.yaml"):
    from dvclive import Live
    name, settings = finetune_profile(params, params_path)
    if settings is None:
        return no_finetune(out_dir, live_dir)
    schema = load_schema(prepared_dir)
    splits = {s: load_split(prepared_dir, s) for s in SPLITS}
    texts = {s: [model_input(r) for r in rows] for s, rows in splits.items()}
    y = {s: np.array([r["labels"] for r in rows], dtype=np.float64) for s, rows in splits.items()}
    try:
        regressor = LoRARegressor(**settings, seed=base_seed(params, params_path),
                                  score_range=schema["score_range"])
    except (TypeError, ValueError) as err:
        raise InputError(params_path, str(err), field=f"finetune.profiles.{name}") from None

    # DVCLive writes metrics.json and plots/metrics/**.tsv; no dvc.yaml of its own and no experiment: the stage
    # declares these files, and `dvc exp run` makes the experiment. It writes into a staging folder renamed into
    # place once it has closed, so a killed run leaves the previous complete files (or none), never a partial
    # metrics.json or half a curve.
    with staged_directory(live_dir) as live_staging, \
            Live(str(live_staging), save_dvc_exp=False, dvcyaml=None) as live, staged_directory(out_dir) as staging:
        # one bar over the optimiser steps (elapsed, rate, ETA), with the loss and learning rate
        bar = progress(desc=f"finetune {name}", unit="step")

        def on_step(record):
            # each value at the optimiser step it belongs to (1 = after the first step), as validations are
            live.step = record["step"]
            live.log_metric("train/loss", record["loss"])
            live.log_metric("train/lr", record["lr"])
            bar.total = record["of"]
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
            bar.update()

        def on_validation(record):
            live.step = record["step"]
            live.log_metric("val/mae", record["val_mae"])
            logger.debug(f"finetune {name}: step {record['step']} val MAE {record['val_mae']:.4f}")

        def on_epoch(record):
            logger.info(f"finetune {name}: epoch {record['epoch']} train loss {record['train_loss']:.4f} "
                        f"val MAE {record['val_mae']:.4f} ({record['seconds']:.0f} s)")

        with bar:
            regressor.fit(texts["train"], y["train"], texts["val"], y["val"], on_step=on_step,
                          on_validation=on_validation, on_epoch=on_epoch)
        start = time.perf_counter()
        predictions = {split: regressor.predict(texts[split]) for split in PREDICTED_SPLITS}
        predict_seconds = time.perf_counter() - start
        timing = latency_ms(regressor.predict, texts["test"][:LATENCY_ARTICLES], repeats=8)

        regressor.save(staging)
        write_scoring(staging, "adapter", schema["dimensions"], schema["score_range"], profile=name,
                      base=settings["source"])
        for split in PREDICTED_SPLITS:
            save_predictions(staging, split, [r["id"] for r in splits[split]], predictions[split])
        live.summary.update({
            "profile": name, "base": settings["source"], "device": regressor.device_, "dtype": regressor.dtype_,
            "hardware": regressor.hardware_, "trained": True,
            "trainable_parameters": int(sum(p.numel() for p in regressor.model_.parameters() if p.requires_grad)),
            "best_epoch": regressor.best_epoch_, "best_step": regressor.best_step_,
            "best_val_mae": regressor.best_val_mae_, "validations": len(regressor.validations_),
            "steps": regressor.steps_, "fit_seconds": round(regressor.fit_seconds_, 1),
            "seconds_per_step": round(regressor.train_seconds_ / max(1, regressor.steps_), 3),
            "train_tokens_per_second": round(regressor.train_tokens_ / regressor.train_seconds_, 1),
            "max_tokens": settings.get("max_tokens"), "batch_size": settings.get("batch_size"),
            "predict_seconds": round(predict_seconds, 2), "latency_ms": timing, **peak_memory_mb(regressor.device_)})
    return live.summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True, help="directory written by prepare")
    parser.add_argument("--out", required=True, help="directory for the adapter and the test predictions")
    parser.add_argument("--live", required=True, help="DVCLive directory (metrics.json, plots/metrics)")
    args = parser.parse_args()
    summary = finetune(args.prepared, args.out, args.live, load_params(args.params), args.params)
    if not summary["trained"]:
        logger.info("finetune: finetune.profile is none, no adapter trained")
        return
    logger.info(f"finetune {summary['profile']}: best val MAE {summary['best_val_mae']:.4f} (epoch "
                f"{summary['best_epoch']}, step {summary['best_step']}; validated {summary['validations']}x), "
                f"{summary['steps']} steps in {summary['fit_seconds']} s on {summary['device']} ({summary['dtype']})")


if __name__ == "__main__":
    run_main(main)
