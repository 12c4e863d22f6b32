"""The typed config of `distill train`: defaults < YAML file < CLI flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from kgen.models import EMBEDDED_LLM
from ground.config import load_yaml
from ground.errors import ConfigError

# Attention and MLP projections of Llama-style models (SmolLM2, Qwen2.5, Llama, Mistral).
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


@dataclass(kw_only=True)
class TrainConfig:
    """Everything `distill train` needs; written as train_config.json beside the model."""

    data: str
    output: str
    student: str = EMBEDDED_LLM
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    # 0: on CPU the dropout masks and dropped copies of seven inputs per layer were about 35% of the activation
    # memory and 13% of a LoRA step's time (SmolLM2-135M, bench/results/distill.jsonl); ctr's LoRA uses 0 too.
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float | None = None  # None: 2e-4 with LoRA, 5e-5 for full fine-tuning
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    batch_size: int = 8  # examples per device in an optimizer step (times grad_accum)
    micro_batch_size: int | None = None  # examples per forward pass, a divisor of batch_size; None: CPU 2, GPU all
    eval_batch_size: int | None = None  # None: batch_size
    grad_accum: int = 1
    max_length: int = 768
    seed: int = 0
    logging_steps: int = 5
    save_steps: int = 50
    save_total_limit: int = 2
    eval_steps: int | None = None  # None: evaluate at save_steps
    gradient_checkpointing: bool = False
    resume: bool = True

    def __post_init__(self) -> None:
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
    values = load_yaml(yaml_path, TrainConfig) if yaml_path else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    for required in ("data", "output"):
        if values.get(required) in (None, ""):
            raise ConfigError(f"{required} is required (a flag or a YAML key)")
    return TrainConfig(**values)
