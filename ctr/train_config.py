"""The typed config of `ctr train`: defaults < YAML file < CLI flags; written as ctr_config.json beside the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from distill.train_config import DEFAULT_TARGET_MODULES
from ground.config import load_yaml
from kgen.models import EMBEDDED_LLM
from ground.errors import ConfigError

MODELS = ("deepfm", "din", "msd", "msd-deepfm", "elec", "elec-deepfm")
BACKBONES = {"deepfm": "deepfm", "din": "din", "msd": "din", "msd-deepfm": "deepfm", "elec": "din", "elec-deepfm": "deepfm"}


@dataclass(kw_only=True)
class CTRConfig:
    """Everything `ctr train` needs."""

    data: str  # a `ctr prepare` folder
    output: str
    model: str = "din"
    seed: int = 0
    # --- backbone (DIN / DeepFM) ---
    embed_dim: int = 16
    hidden: list[int] = field(default_factory=lambda: [200, 80])
    attention_hidden: list[int] = field(default_factory=lambda: [80, 40])
    dropout: float = 0.0
    max_history: int | None = None  # None: the card's max_history; smaller keeps the last N items
    # --- loop ---
    epochs: int = 10
    patience: int = 2  # epochs without a better validation AUC before stopping
    batch_size: int = 1024
    eval_batch_size: int = 4096
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_train_samples: int | None = None  # the first N train rows (a slice, e.g. for the LoRA path on CPU)
    max_eval_samples: int | None = None  # the first N val and test rows
    # --- MSD (model msd / msd-deepfm) ---
    knowledge: str | None = None  # folder of `distill embed` tables; required without LoRA
    adaptor_hidden: int = 64
    top_k: int = 3
    # Highest masking probability, reached by the most frequent item; rarer items are masked less.
    mask_rate: float = 0.3
    # z-score each dimension of the cached tables (see knowledge.standardize); the LoRA path feeds raw vectors
    standardize_vectors: bool = True
    item_fusion: bool = True
    user_level: bool = True
    lora: bool = False  # the student computes the vectors inside the forward pass and the CTR loss trains LoRA
    student: str = EMBEDDED_LLM  # a model folder, a `distill train --lora` adapter, a hub id or the embedded alias
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    lora_learning_rate: float = 1e-4
    student_max_length: int = 64  # tokens per item / user text in the LoRA path
    student_max_history: int = 10  # items in a user's text (as `distill embed --max-history`)
    # --- ELEC (model elec / elec-deepfm): the gain network is MSD with the settings above ---
    distill_score_weight: float = 1.0  # score distillation (vanilla logit follows the gain's); 0 = off
    distill_repr_weight: float = 1.0  # representation distillation (last MLP hidden layer); 0 = off
    distill_temperature: float = 1.0
    vanilla_hidden: list[int] | None = None  # MLP sizes of the served vanilla network; None = `hidden`

    def __post_init__(self) -> None:
        self.hidden, self.attention_hidden = list(self.hidden), list(self.attention_hidden)
        self.lora_target_modules = list(self.lora_target_modules)
        self.vanilla_hidden = list(self.vanilla_hidden) if self.vanilla_hidden is not None else None
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        for name in ("embed_dim", "epochs", "patience", "batch_size", "eval_batch_size", "adaptor_hidden", "top_k",
                     "lora_r", "lora_alpha", "student_max_length", "student_max_history", "learning_rate",
                     "lora_learning_rate"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_history", "max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 or unset, got {getattr(self, name)}")
        if not self.hidden or not self.attention_hidden or min(self.hidden + self.attention_hidden) < 1:
            raise ConfigError(f"hidden sizes must be >= 1, got {self.hidden} / {self.attention_hidden}")
        for name in ("dropout", "mask_rate", "lora_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        self.check_elec()
        if (self.is_msd or self.is_elec) and not self.lora and not self.knowledge:
            raise ConfigError(f"model {self.model} without --lora needs --knowledge (a `distill embed` folder)")

    def check_elec(self) -> None:
        for name in ("distill_score_weight", "distill_repr_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"distill_temperature must be > 0, got {self.distill_temperature}")
        if self.vanilla_hidden is not None and (not self.vanilla_hidden or min(self.vanilla_hidden) < 1):
            raise ConfigError(f"vanilla_hidden sizes must be >= 1, got {self.vanilla_hidden}")
        if self.is_elec and self.lora:
            raise ConfigError(f"model {self.model} trains on cached vectors only (--lora is MSD's)")

    @property
    def is_msd(self) -> bool:
        return self.model.startswith("msd")

    @property
    def is_elec(self) -> bool:
        return self.model.startswith("elec")

    @property
    def backbone(self) -> str:
        return BACKBONES[self.model]

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_config(yaml_path: str | Path | None, flags: dict) -> CTRConfig:
    """Defaults, then the YAML file, then the flags that were given (None means not given)."""
    values = load_yaml(yaml_path, CTRConfig) if yaml_path else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    for required in ("data", "output"):
        if values.get(required) in (None, ""):
            raise ConfigError(f"{required} is required (a flag or a YAML key)")
    return CTRConfig(**values)
