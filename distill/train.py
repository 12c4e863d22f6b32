"""Student SFT with TRL: full fine-tuning or LoRA, loss on the teacher's answer tokens only (the paper's eq. 1).

The same code runs on one CPU and under `accelerate launch` on GPUs: the
trainer places the model, bf16 is used only when CUDA is there, and files are
written by the main process only.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

from distill.train_config import TrainConfig
from ground.errors import ConfigError, RecordError
from ground.files import write_json
from ground.runinfo import peak_rss_mb
from kgen.models import loading_model, resolve_llm

TRAIN_COLUMNS = ["prompt", "completion"]


def load_splits(data: str | Path):
    """The train and validation splits written by `distill build-data` (prompt/completion columns only)."""
    from datasets import load_from_disk

    path = Path(data)
    if not (path / "dataset_dict.json").exists():
        raise RecordError(f"{path}: not a dataset folder from `distill build-data` (no dataset_dict.json)")
    splits = load_from_disk(str(path))
    if len(splits["train"]) == 0:
        raise RecordError(f"{path}: the train split is empty")
    train = splits["train"].select_columns(TRAIN_COLUMNS)
    val = splits["validation"].select_columns(TRAIN_COLUMNS) if "validation" in splits else None
    return train, (val if val is not None and len(val) else None)


def lora_config(config: TrainConfig):
    """The peft LoraConfig of a run."""
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_target_modules), task_type="CAUSAL_LM")


CPU_MICRO_BATCH = 2  # examples per forward pass on CPU: 2 x 340 tokens keep about 1 GB of activations (135M, fp32)


def micro_batch(config: TrainConfig, cuda: bool) -> int:
    """Examples per forward pass: the configured value, else the whole batch on a GPU and at most 2 on CPU.

    The optimizer step still sees batch_size examples (gradients are accumulated and the loss is divided by the
    batch's completion tokens), so only the memory changes: on CPU the activations kept for backward grow with the
    examples in a pass (about 0.5 GB per example of 350 tokens on SmolLM2-135M in fp32).
    """
    if config.micro_batch_size is not None:
        return config.micro_batch_size
    if cuda:
        return config.batch_size
    return max(n for n in range(1, min(config.batch_size, CPU_MICRO_BATCH) + 1) if config.batch_size % n == 0)


def sft_config(config: TrainConfig, has_eval: bool):
    """TRL's SFTConfig for a run: completion-only loss, step checkpoints, bf16 only on CUDA, no reporting."""
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    micro = micro_batch(config, cuda)
    # transformers 5.2x renamed gradient_checkpointing (TRL defaults it to True) to activation_checkpointing.
    renamed = "activation_checkpointing" in SFTConfig.__dataclass_fields__
    checkpointing = {"activation_checkpointing" if renamed else "gradient_checkpointing": config.gradient_checkpointing}
    # Batches of similar lengths waste less compute and memory on padding (answers vary from 100 to 500 tokens).
    grouping = ({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in SFTConfig.__dataclass_fields__
                else {"group_by_length": True})
    return SFTConfig(
        output_dir=config.output,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.grad_accum * (config.batch_size // micro),
        **checkpointing,
        **grouping,
        completion_only_loss=True,  # labels are -100 on the prompt: only the teacher's answer is learned
        max_length=config.max_length,
        seed=config.seed,
        bf16=cuda,
        fp16=False,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps,
        report_to="none",
        include_num_input_tokens_seen="non_padding",
        model_init_kwargs={"dtype": "float32"},  # master weights in fp32; bf16 autocast on CUDA
        dataset_num_proc=None,
    )


def load_tokenizer(path: str):
    """The student's tokenizer, with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_trainer(config: TrainConfig, train, val):
    """An SFTTrainer for the run; the model is loaded by TRL from the resolved path."""
    from trl import SFTTrainer

    import torch

    from distill.lm_head import add_completion_lm_head

    path = resolve_llm(config.student)
    with loading_model(config.student):
        trainer = SFTTrainer(
            model=path,
            args=sft_config(config, has_eval=val is not None),
            train_dataset=train,
            eval_dataset=val,
            processing_class=load_tokenizer(path),
            peft_config=lora_config(config) if config.lora else None,
        )
    if not torch.cuda.is_available():  # on CUDA, TRL's Triton kernel already scores only the labelled positions
        model = trainer.model
        add_completion_lm_head(model.get_base_model() if hasattr(model, "get_base_model") else model)
    trainer.sequence_lengths = fit_max_length(trainer, config.max_length, len(train) + len(val or ()))
    return trainer


LENGTH_STEP = 64  # max_length is rounded up to a multiple of this


def fit_max_length(trainer, limit: int, given: int) -> dict:
    """Set the trainer's max_length to the longest tokenised example, rounded up, at most `limit`; say so on stderr.

    TRL has already cut every example to `limit` (dropping those left without answer tokens) and pads each batch
    to its longest, so this changes no batch: it records the length the run needs and names what the limit cost.
    """
    lengths = [len(ids) for split in (trainer.train_dataset, trainer.eval_dataset) if split is not None
               for ids in split["input_ids"]]
    if len(trainer.train_dataset) == 0:
        raise ConfigError(f"max_length {limit} leaves no answer token in any training example: raise it")
    longest, at_limit, dropped = max(lengths), sum(n >= limit for n in lengths), given - len(lengths)
    fitted = min(limit, -(-longest // LENGTH_STEP) * LENGTH_STEP)
    trainer.args.max_length = fitted
    cost = (f"; {at_limit} examples reach the limit and lose their ends" if at_limit else "") + (
        f"; {dropped} examples dropped, their prompt alone reaches it" if dropped else "")
    if trainer.is_world_process_zero():  # once under `accelerate launch`
        print(f"distill train: longest example {longest} tokens, max_length {fitted} (limit {limit}){cost}",
              file=sys.stderr, flush=True)
    return {"max_length": fitted, "max_length_limit": limit, "longest_example_tokens": longest,
            "examples_at_limit": at_limit, "examples_dropped": dropped}


def last_checkpoint(output: str | Path) -> str | None:
    """The newest checkpoint-N folder in the output, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output)) if Path(output).is_dir() else None


def run_metrics(trainer, train_output, eval_metrics: dict, resumed_from: str | None) -> dict:
    """The figures written to metrics.json."""
    import torch

    runtime = train_output.metrics.get("train_runtime", 0.0)
    tokens = trainer.state.num_input_tokens_seen - getattr(trainer, "_initial_num_input_tokens_seen", 0)
    metrics = {
        "train_loss": train_output.training_loss,
        "eval_loss": eval_metrics.get("eval_loss"),
        "global_step": trainer.state.global_step,
        "epoch": trainer.state.epoch,
        "train_runtime_s": round(runtime, 2),
        "train_tokens": int(tokens),
        "tokens_per_s": round(tokens / runtime, 2) if runtime else None,
        "samples_per_s": train_output.metrics.get("train_samples_per_second"),
        "peak_rss_mb": peak_rss_mb(),
        "loss_curve": [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h],
        "resumed_from": resumed_from,
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }
    if torch.cuda.is_available():
        metrics["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return metrics


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)
# Blocks of 4 MiB and more are mmap'd and go back to the OS when freed; smaller ones are reused from the heap.
# glibc's own initial value, 128 KiB, also kept memory down but made every step fault its activation blocks in
# anew (~15 M minor page faults a 4-step run); at 4 MiB a LoRA run at batch 8 spent 24% less CPU time for the
# same loss curve and peak RSS ~2.2 GB (bench/results/distill.jsonl, issue 22).
_MMAP_THRESHOLD = 4 * 1024 * 1024
_LOW_MEMORY_MMAP_THRESHOLD = 128 * 1024  # glibc's initial value: every larger block goes back to the OS at once


def return_freed_memory(low_memory: bool = False) -> None:
    """Make glibc give every freed block of 4 MiB or more (128 KiB with `low_memory`) back to the OS at once
    (Linux; a no-op elsewhere).

    By default glibc raises its mmap threshold each time a large block is freed, so later activations and
    logits blocks come from the heap, whose freed space it keeps: a CPU training step then holds about three
    times the memory it uses (4.3 GB instead of 1.3 GB for one LoRA step at batch 8 on SmolLM2-135M).
    A fixed threshold stops that growth.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform.startswith("linux") else None
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _LOW_MEMORY_MMAP_THRESHOLD if low_memory else _MMAP_THRESHOLD)


def train(config: TrainConfig) -> dict:
    """Train the student; save model or adapter, tokenizer, train_config.json and metrics.json; return the metrics."""
    return_freed_memory(config.low_memory)
    train_split, val_split = load_splits(config.data)
    trainer = build_trainer(config, train_split, val_split)
    resume = last_checkpoint(config.output) if config.resume else None
    output = trainer.train(resume_from_checkpoint=resume)
    eval_metrics = trainer.evaluate() if val_split is not None else {}
    metrics = run_metrics(trainer, output, eval_metrics, resume)
    trainer.save_model(config.output)  # the adapter alone with LoRA; the tokenizer goes with it
    if trainer.is_world_process_zero():
        write_json(Path(config.output) / "train_config.json",
                     {**config.to_dict(), **trainer.sequence_lengths,
                      "micro_batch_size": trainer.args.per_device_train_batch_size, "student_path": resolve_llm(config.student)})
        write_json(Path(config.output) / "metrics.json", metrics)
    return metrics
