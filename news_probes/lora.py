"""The fine-tuned baseline: a LoRA adapter with a regression head on a causal LM (`LoRARegressor`).

The model is `AutoModelForSequenceClassification` over the LM (one output per dimension, the last real token
pooled), wrapped with peft LoRA; the score head is trained in full (`modules_to_save`). Targets are
standardised with the training split's mean and std, so one learning rate suits any score scale; predictions
are mapped back and clipped to the score range. Validation MAE is measured after every epoch (and every
`eval_steps` steps when set) and the adapter of the best validation is kept. Only the adapter and the head are
saved, never the base weights.

Under bf16 (where native) the frozen base weights are held in bf16 once, instead of being cast at every matmul by
autocast; the LoRA matrices and the head stay fp32 (they are trained and saved). For scoring, texts are batched
by length, and where the base computes fp32 the LoRA weights are merged into it (peft's merge_adapter, undone
before saving); in bf16 they stay beside it, as in training (see predict).
"""
import contextlib
import copy
import inspect
import logging
import math
import re
import time
import warnings
from pathlib import Path

import numpy as np

from news_probes.artifacts import NO_PROFILE
from news_probes.hardware import MIXED_DTYPES, choose_device, choose_dtype, signature
from news_probes.io import read_json, write_json
from news_probes.params import integer, listed, real, registry_entry, text
from news_probes.sources import resolve_source
from news_probes.tokens import TRUNCATION, truncate_ids

INFO = "regressor.json"   # what predict needs besides peft's adapter files: settings, target scaling, best step


def lr_factor(step, warmup_steps, total_steps):
    """Linear warm-up over warmup_steps, then linear decay to zero at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


class NewHeadOnly(logging.Filter):
    """Drops transformers' load report when all it reports is the regression head missing from the base model's
    checkpoint: that head is always new here (fit trains it, the adapter folder restores it), and the report's
    "consider training" would mislead. A report of any other key passes."""

    def filter(self, record):
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        keys = re.findall(r"^(\S+)\s*\|\s*(\w+)\s*\|", message, re.M)
        reported = [(key, status) for key, status in keys if key != "Key"]
        return not reported or not all(key.startswith("score.") and status == "MISSING" for key, status in reported)


@contextlib.contextmanager
def quiet_loading():
    """Loading the base and wrapping it: without the new head's load report (NewHeadOnly) and the deprecation
    warning peft's checkpointing check raises in transformers (`is_gradient_checkpointing`), not this code's."""
    modeling = logging.getLogger("transformers.modeling_utils")
    head_filter = NewHeadOnly()
    modeling.addFilter(head_filter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        modeling.removeFilter(head_filter)


class LoRARegressor:
    """LoRA fine-tuning for multi-output regression; sklearn-style: hyperparameters here, fit returns self."""

    def __init__(self, source, r=16, alpha=32, dropout=0.05,
                 target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                 modules_to_save=("score",),
                 max_tokens=512, truncation="head", epochs=3, batch_size=8, grad_accumulation=1, lr=2e-5,
                 warmup_steps=0, max_grad_norm=1.0, gradient_checkpointing=False, eval_steps=0, device="auto",
                 dtype="auto", seed=42, score_range=(0.0, 10.0)):
        self.source, self.r = source, integer(r, "r", minimum=1)
        real(alpha, "alpha", above=0)
        self.alpha = alpha                      # kept as written: it goes into peft's adapter_config.json
        self.dropout = real(dropout, "dropout", at_least=0, at_most=0.99)
        # LoRA on target_modules; modules_to_save are trained in full (the new regression head, "score").
        self.target_modules = listed(target_modules, "target_modules", text)
        self.modules_to_save = list(modules_to_save) and listed(modules_to_save, "modules_to_save", text)
        self.max_tokens, self.truncation = integer(max_tokens, "max_tokens", minimum=4), truncation
        self.epochs, self.batch_size = integer(epochs, "epochs", minimum=1), integer(batch_size, "batch_size", minimum=1)
        self.grad_accumulation = integer(grad_accumulation, "grad_accumulation", minimum=1)
        self.lr, self.warmup_steps = real(lr, "lr", above=0), integer(warmup_steps, "warmup_steps", minimum=0)
        self.max_grad_norm = real(max_grad_norm, "max_grad_norm", above=0)
        self.gradient_checkpointing, self.device, self.seed = bool(gradient_checkpointing), device, int(seed)
        # Validation after every epoch, and also every `eval_steps` optimiser steps when above 0: on long runs the
        # best adapter is then picked between epochs too.
        self.eval_steps = integer(eval_steps, "eval_steps (0: each epoch only)", minimum=0)
        self.dtype, self.score_range = dtype, tuple(score_range)
        if truncation not in TRUNCATION:
            raise ValueError(f"truncation must be one of {TRUNCATION}, not {truncation!r}")
        if dtype not in MIXED_DTYPES:
            raise ValueError(f"dtype must be one of {MIXED_DTYPES}, not {dtype!r}")

    def get_params(self):
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    # --- model -------------------------------------------------------------------------------------------

    def _load_base(self, n_outputs):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        path = resolve_source(self.source)
        self.device_ = choose_device(self.device)
        # auto: bf16 mixed precision where bf16 is native (hardware.choose_dtype), fp32 elsewhere. Weights stay
        # fp32 either way: the LoRA matrices and the head are updated in full precision, only matmuls run in bf16.
        self.dtype_ = choose_dtype(self.dtype, self.device_, field="finetune dtype")
        self.hardware_ = signature(self.device_, self.dtype_)
        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        if self.tokenizer_.pad_token_id is None:
            self.tokenizer_.pad_token = self.tokenizer_.eos_token
        with quiet_loading():
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=n_outputs, problem_type="regression", dtype=torch.float32)
        model.config.pad_token_id = self.tokenizer_.pad_token_id
        return model

    def _wrap(self, model):
        from peft import LoraConfig, get_peft_model
        config = LoraConfig(task_type="SEQ_CLS", r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            target_modules=self.target_modules, modules_to_save=self.modules_to_save)
        with quiet_loading():
            model = get_peft_model(model, config)
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        return model.to(self.device_)

    def _frozen_base_in(self, dtype_name):
        """Hold the frozen base weights in `dtype_name`; the LoRA matrices and the trained head keep fp32."""
        import torch
        dtype = getattr(torch, dtype_name)
        for name, parameter in self.model_.named_parameters():
            if not parameter.requires_grad and "lora_" not in name and "modules_to_save" not in name:
                parameter.data = parameter.data.to(dtype)

    def _merged(self, merged=True):
        """Merge the LoRA weights into the base for inference, or undo it (for saving, or to score unmerged):
        merged, each adapted layer runs one matmul instead of three. The state is read from peft's layers, so
        a model rebuilt by another fit starts unmerged."""
        from peft.tuners.lora import LoraLayer
        now = any(layer.merged for layer in self.model_.modules() if isinstance(layer, LoraLayer))
        if merged and not now:
            self.model_.merge_adapter()
        elif not merged and now:
            self.model_.unmerge_adapter()

    @property
    def merges_for_scoring(self):
        """Whether scoring runs the LoRA weights merged into the base: where the base computes float32 only.
        Merged into bf16 weights, the LoRA product is rounded to their precision, and what lies below half their
        last bit is lost (bench/README.md has the scores it moved); unmerging them does not restore the base
        exactly either."""
        return self.dtype_ == "float32"

    def _precision(self):
        """The autocast context of forward passes: bf16 matmuls under mixed precision, a no-op in fp32."""
        import torch
        if self.dtype_ == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_.split(":")[0], dtype=torch.bfloat16)

    def _token_ids(self, texts):
        """Each text's token ids, cut by the truncation policy (once per text set, not once per epoch)."""
        return [truncate_ids(self.tokenizer_(t, add_special_tokens=True)["input_ids"], self.max_tokens,
                             self.truncation) for t in texts]

    def _batches(self, ids, order=None):
        """(input_ids, attention_mask) batches, right-padded; the model pools the last real token."""
        import torch
        order = list(range(len(ids)) if order is None else order)
        pad = self.tokenizer_.pad_token_id
        for start in range(0, len(order), self.batch_size):
            chunk = [ids[i] for i in order[start:start + self.batch_size]]
            width = max(len(c) for c in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, c in enumerate(chunk):
                input_ids[row, :len(c)] = torch.tensor(c)
                mask[row, :len(c)] = 1
            yield order[start:start + self.batch_size], input_ids.to(self.device_), mask.to(self.device_)

    def _raw(self, ids):
        """Model outputs in standardised units for token-id lists, in input order. Batches are formed longest
        first: texts of similar length pad least (each row pools its own last real token, so order is free)."""
        import torch
        self.model_.eval()
        out = np.zeros((len(ids), self.n_outputs_))
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        with torch.no_grad(), self._precision():
            for index, input_ids, mask in self._batches(ids, order):
                out[index] = self.model_(input_ids=input_ids, attention_mask=mask).logits.float().cpu().numpy()
        return out

    # --- estimator ---------------------------------------------------------------------------------------

    def fit(self, texts, y, val_texts, y_val, on_step=None, on_validation=None, on_epoch=None):
        """Train; keep the adapter with the lowest validation MAE. For logging, on_step(record) is called after
        each optimiser step, on_validation(record) after each validation, on_epoch(record) after each epoch."""
        import torch
        from peft import get_peft_model_state_dict, set_peft_model_state_dict
        torch.manual_seed(self.seed)
        y, y_val = np.asarray(y, dtype=np.float64), np.asarray(y_val, dtype=np.float64)
        self.n_outputs_ = y.shape[1]
        self.mean_, self.std_ = y.mean(axis=0), np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
        targets = torch.tensor((y - self.mean_) / self.std_, dtype=torch.float32)
        base = self._load_base(self.n_outputs_)
        # A zero head starts every prediction at the training mean (targets are standardised): the first steps
        # then refine from the mean instead of undoing a random projection of hidden states, whose scale in
        # LLMs is large (bench/README.md has the initial losses measured with both heads).
        if isinstance(getattr(base, "score", None), torch.nn.Linear):
            torch.nn.init.zeros_(base.score.weight)
        self.model_ = self._wrap(base)
        if self.dtype_ != "float32":
            self._frozen_base_in(self.dtype_)
        trainable = [p for p in self.model_.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(trainable, lr=self.lr)
        steps_per_epoch = math.ceil(math.ceil(len(texts) / self.batch_size) / self.grad_accumulation)
        total_steps = max(1, steps_per_epoch * self.epochs)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: lr_factor(step, self.warmup_steps,
                                                                                     total_steps))
        generator = np.random.default_rng(self.seed)
        train_ids, val_ids = self._token_ids(texts), self._token_ids(val_texts)
        self.history_, self.validations_, best_state, step = [], [], None, 0
        self.train_tokens_, validation_seconds = 0, 0.0      # real tokens trained on; time spent validating
        start = time.perf_counter()

        def validate(epoch):
            nonlocal best_state, validation_seconds
            validation_start = time.perf_counter()
            val_mae = float(np.abs(self._unscale(self._raw(val_ids)) - y_val).mean())
            record = {"step": step, "epoch": epoch, "val_mae": val_mae, "seconds": time.perf_counter() - start}
            if val_mae < min((v["val_mae"] for v in self.validations_), default=float("inf")):
                best_state = copy.deepcopy(get_peft_model_state_dict(self.model_))
            self.validations_.append(record)
            validation_seconds += time.perf_counter() - validation_start
            if on_validation:
                on_validation(record)
            self.model_.train()
            return val_mae

        for epoch in range(1, self.epochs + 1):
            self.model_.train()
            losses, step_losses = [], []
            batches = list(self._batches(train_ids, order=generator.permutation(len(train_ids))))
            for i, (index, input_ids, mask) in enumerate(batches):
                with self._precision():
                    logits = self.model_(input_ids=input_ids, attention_mask=mask).logits.float()
                loss = torch.nn.functional.mse_loss(logits, targets[index].to(logits.device))
                (loss / self.grad_accumulation).backward()
                losses.append(loss.item())
                self.train_tokens_ += int(mask.sum())
                if (i + 1) % self.grad_accumulation == 0 or i + 1 == len(batches):
                    torch.nn.utils.clip_grad_norm_(trainable, self.max_grad_norm)
                    lr = schedule.get_last_lr()[0]
                    optimiser.step()
                    schedule.step()
                    optimiser.zero_grad()
                    step += 1
                    step_losses.append(float(np.mean(losses[-self.grad_accumulation:])))
                    if on_step:
                        on_step({"step": step, "of": total_steps, "epoch": epoch, "loss": step_losses[-1],
                                 "lr": lr, "seconds": time.perf_counter() - start})
                    if self.eval_steps and step % self.eval_steps == 0 and i + 1 < len(batches):
                        validate(epoch)
            record = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_mae": validate(epoch),
                      "step_losses": step_losses, "seconds": time.perf_counter() - start}
            self.history_.append(record)
            if on_epoch:
                on_epoch(record)
        set_peft_model_state_dict(self.model_, best_state)
        best = min(self.validations_, key=lambda v: v["val_mae"])   # the first of equal minima: the state kept
        self.best_val_mae_, self.best_step_, self.best_epoch_ = best["val_mae"], best["step"], best["epoch"]
        self.fit_seconds_, self.steps_ = time.perf_counter() - start, step
        self.train_seconds_ = self.fit_seconds_ - validation_seconds
        return self

    def _unscale(self, raw):
        return raw * self.std_ + self.mean_

    def predict(self, texts, merged=None):
        """Scores of `texts`. merged=True runs the LoRA weights merged into the base (one matmul per layer instead
        of three), False beside it, as in training; by default as `merges_for_scoring` says."""
        self._merged(self.merges_for_scoring if merged is None else merged)
        return np.clip(self._unscale(self._raw(self._token_ids(texts))), *self.score_range)

    def save(self, directory):
        """The adapter and the score head (peft's save_pretrained), plus what predict needs: never the base."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._merged(False)
        self.model_.save_pretrained(directory)
        write_json(directory / INFO, {
            "params": self.get_params(), "n_outputs": self.n_outputs_, "mean": self.mean_.tolist(),
            "std": self.std_.tolist(), "best_epoch": self.best_epoch_, "best_step": self.best_step_,
            "best_val_mae": self.best_val_mae_})

    @classmethod
    def load(cls, directory, **overrides):
        """The saved regressor; `overrides` replace saved settings that do not change the weights (dtype, device:
        a scorer picks its own precision for the machine it runs on)."""
        from peft import PeftModel
        directory = Path(directory)
        info = read_json(directory / INFO)
        params = {**info["params"], **overrides}
        params["score_range"] = tuple(params["score_range"])
        regressor = cls(**params)
        regressor.n_outputs_ = info["n_outputs"]
        regressor.mean_, regressor.std_ = np.array(info["mean"]), np.array(info["std"])
        regressor.best_epoch_, regressor.best_val_mae_ = info["best_epoch"], info["best_val_mae"]
        regressor.best_step_ = info.get("best_step")
        base = regressor._load_base(regressor.n_outputs_)
        with quiet_loading():
            regressor.model_ = PeftModel.from_pretrained(base, directory).to(regressor.device_).eval()
        # as in fit: the frozen base in its dtype first, then merged where scoring merges
        if regressor.dtype_ != "float32":
            regressor._frozen_base_in(regressor.dtype_)
        regressor._merged(regressor.merges_for_scoring)
        return regressor


# Settings a profile may hold: LoRARegressor's hyperparameters; the seed and score range come from params/data.
PROFILE_KEYS = set(inspect.signature(LoRARegressor.__init__).parameters) - {"self", "seed", "score_range"}


def finetune_profile(params, params_path="params.yaml"):
    """(name, settings) of the profile named by finetune.profile, checked so a typo fails before any training;
    settings are None for `none`."""
    section = params.get("finetune") or {}
    name = section.get("profile")
    if name == NO_PROFILE:
        return name, None
    return name, registry_entry(section.get("profiles"), name, PROFILE_KEYS, params_path, "profile",
                                "finetune.profile", f"finetune.profiles.{name}")
