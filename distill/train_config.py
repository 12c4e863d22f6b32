"""The typed config of `distill train`: defaults < YAML file < CLI flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from kgen.models import EMBEDDED_LLM
from kgen.records import RecordError

# Attention and MLP projections of Llama-style models (SmolLM2, Qwen2.5, Llama, Mistral).
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


@dataclass
class TrainConfig:
    """Everything `distill train` needs; written as train_config.json beside the model."""

    data: str
    output: str
    student: str = EMBEDDED_LLM
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float | None = None  # None: 2e-4 with LoRA, 5e-5 for full fine-tuning
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    batch_size: int = 8
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
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError(f"epochs must be > 0 when max_steps is not set, got {self.epochs}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be -1 (use epochs) or > 0, got {self.max_steps}")
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of {', '.join(SCHEDULERS)}, got {self.lr_scheduler!r}")
        if self.lora and not self.lora_target_modules:
            raise ValueError("lora_target_modules must name at least one module")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_positive(config: TrainConfig, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")


def load_yaml(path: str | Path) -> dict:
    """A YAML mapping of TrainConfig fields; unknown keys raise RecordError naming the file."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: no such file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RecordError(f"{where}: malformed YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(values, dict):
        raise RecordError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RecordError(f"{path}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    return values


def resolve_config(yaml_path: str | Path | None, flags: dict) -> TrainConfig:
    """Defaults, then the YAML file, then the flags that were given (None means not given)."""
    values = load_yaml(yaml_path) if yaml_path else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    for required in ("data", "output"):
        if values.get(required) in (None, ""):
            raise ValueError(f"{required} is required (a flag or a YAML key)")
    return TrainConfig(**values)
