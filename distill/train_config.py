"""The typed config of `distill train`: defaults < YAML file < CLI flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ground.errors import ConfigError
from ground.flags import flag, resolve
from kgen.models import EMBEDDED_LLM

# Attention and MLP projections of Llama-style models (SmolLM2, Qwen2.5, Llama, Mistral).
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


@dataclass(kw_only=True)
class TrainConfig:
    """Everything `distill train` needs; written as train_config.json beside the model."""

    data: str = field(metadata=flag("Dataset folder from `distill build-data`."))
    output: str = field(metadata=flag("Run folder.", "--output", "-o"))
    student: str = field(default=EMBEDDED_LLM, metadata=flag("Student base: embedded alias, hub id or folder."))
    lora: bool = field(default=False, metadata=flag("LoRA adapter or full fine-tuning.", "--lora/--full"))
    lora_r: int = field(default=16, metadata=flag("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=flag("LoRA scaling alpha."))
    # 0: on CPU the dropout masks and dropped copies of seven inputs per layer were about 35% of the activation
    # memory and 13% of a LoRA step's time (SmolLM2-135M, bench/results/distill.jsonl); ctr's LoRA uses 0 too.
    lora_dropout: float = field(default=0.0, metadata=flag("LoRA dropout."))
    lora_target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES), metadata=flag(
        "Modules LoRA adapts (attention and MLP projections)."))
    epochs: float = field(default=3.0, metadata=flag("Training epochs."))
    max_steps: int = field(default=-1, metadata=flag("Stop after this many steps (> 0 overrides epochs)."))
    learning_rate: float | None = field(default=None, metadata=flag(
        "Peak learning rate (none: 2e-4 with LoRA, 5e-5 for full fine-tuning).", "--lr", "--learning-rate"))
    lr_scheduler: str = field(default="linear", metadata=flag(f"Learning-rate schedule: {', '.join(SCHEDULERS)}."))
    warmup_ratio: float = field(default=0.03, metadata=flag("Share of the steps spent warming the rate up."))
    weight_decay: float = field(default=0.0, metadata=flag("AdamW weight decay."))
    batch_size: int = field(default=8, metadata=flag("Examples per optimizer step and device, times --grad-accum."))
    micro_batch_size: int | None = field(default=None, metadata=flag(
        "Examples per forward pass, a divisor of --batch-size (none: 2 on CPU, the whole batch on a GPU)."))
    eval_batch_size: int | None = field(default=None, metadata=flag("Examples per evaluation pass (none: --batch-size)."))
    grad_accum: int = field(default=1, metadata=flag("Gradient accumulation steps per optimizer step."))
    max_length: int = field(default=768, metadata=flag("Tokens per example (longer ones are cut)."))
    seed: int = field(default=0, metadata=flag("Seed of the shuffling, dropout and initialisation."))
    logging_steps: int = field(default=5, metadata=flag("Log the loss every N steps."))
    save_steps: int = field(default=50, metadata=flag("Save a checkpoint every N steps."))
    save_total_limit: int = field(default=2, metadata=flag("Checkpoints kept (the oldest are deleted)."))
    eval_steps: int | None = field(default=None, metadata=flag("Evaluate every N steps (none: --save-steps)."))
    gradient_checkpointing: bool = field(default=False, metadata=flag(
        "Recompute activations in the backward pass: less memory, more time."))
    low_memory: bool = field(default=False, metadata=flag(
        "CPU: hand every freed block over 128 KiB back to the OS at once: ~25% less peak memory, ~1.7x slower "
        "(docs/performance.md)."))
    resume: bool = field(default=True, metadata=flag("Resume from the last checkpoint in --output."))

    def __post_init__(self) -> None:
        for required in ("data", "output"):
            if not getattr(self, required):
                raise ConfigError(f"{required} is required (a flag or a YAML key)")
        self.lora_target_modules = list(self.lora_target_modules)
        if self.learning_rate is None:
            self.learning_rate = 2e-4 if self.lora else 5e-5
        if self.eval_batch_size is None:
            self.eval_batch_size = self.batch_size
        if self.eval_steps is None:
            self.eval_steps = self.save_steps
        _check_positive(self, ("lora_r", "lora_alpha", "batch_size", "eval_batch_size", "grad_accum", "max_length",
                               "logging_steps", "save_steps", "save_total_limit", "eval_steps", "learning_rate"))
        if self.micro_batch_size is not None and (self.micro_batch_size <= 0 or self.batch_size % self.micro_batch_size):
            raise ConfigError(f"micro_batch_size must divide batch_size {self.batch_size}, got {self.micro_batch_size}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError(f"epochs must be > 0 when max_steps is not set, got {self.epochs}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"max_steps must be -1 (use epochs) or > 0, got {self.max_steps}")
        if self.lr_scheduler not in SCHEDULERS:
            raise ConfigError(f"lr_scheduler must be one of {', '.join(SCHEDULERS)}, got {self.lr_scheduler!r}")
        if self.lora and not self.lora_target_modules:
            raise ConfigError("lora_target_modules must name at least one module")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_positive(config: TrainConfig, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")


def resolve_config(yaml_path: str | Path | None, flags: dict) -> TrainConfig:
    """Defaults, then the YAML file, then the flags that were given (None means not given)."""
    return resolve(TrainConfig, yaml_path, {k: v for k, v in flags.items() if v is not None})
