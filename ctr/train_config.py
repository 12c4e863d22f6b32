"""The typed config of `ctr train` (and `ctr tune`): defaults < YAML file < CLI flags; written as ctr_config.json.

Every field declares its own help text (ground.flags): the CLI flags are derived from these fields, so a
setting is spelt, defaulted and explained once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from distill.train_config import DEFAULT_TARGET_MODULES
from ground.errors import ConfigError
from ground.flags import flag, resolve
from kgen.models import EMBEDDED_LLM

FUSIONS = ("concat", "gate", "add", "none")  # how MSD joins the top-k sum with the target (ctr/knowledge.py)
MASK_BY = ("frequent", "rare", "uniform")  # which history items MSD masks more
USER_SOURCES = ("history", "table")  # where MSD's user vector comes from
MODELS = ("deepfm", "din", "msd", "msd-deepfm", "elec", "elec-deepfm")
BACKBONES = {"deepfm": "deepfm", "din": "din", "msd": "din", "msd-deepfm": "deepfm", "elec": "din", "elec-deepfm": "deepfm"}


@dataclass(kw_only=True)
class CTRConfig:
    """Everything `ctr train` needs."""

    data: str = field(metadata=flag("Folder written by `ctr prepare`."))
    output: str = field(metadata=flag("Run folder.", "--output", "-o"))
    model: str = field(default="din", metadata=flag(f"One of: {', '.join(MODELS)} (msd = MSD on DIN, elec = ELEC "
                                                     "on DIN)."))
    seed: int = field(default=0, metadata=flag("Seed of the weights, the shuffle and the masks."))
    # --- backbone (DIN / DeepFM) ---
    embed_dim: int = field(default=16, metadata=flag("Embedding width of every field."))
    hidden: list[int] = field(default_factory=lambda: [200, 80], metadata=flag("MLP hidden sizes."))
    attention_hidden: list[int] = field(default_factory=lambda: [80, 40],
                                        metadata=flag("DIN: attention MLP hidden sizes."))
    dropout: float = field(default=0.0, metadata=flag("MLP dropout."))
    max_history: int | None = field(default=None, metadata=flag("History items kept (the last N; default: the "
                                                                "card's max_history)."))
    # --- loop ---
    epochs: int = field(default=30, metadata=flag("Most epochs; training stops earlier on validation AUC."))
    patience: int = field(default=2, metadata=flag("Epochs without a better validation AUC before stopping."))
    batch_size: int = field(default=1024, metadata=flag("Train batch (the global batch under torchrun)."))
    eval_batch_size: int = field(default=4096, metadata=flag("Scoring batch."))
    learning_rate: float = field(default=1e-3, metadata=flag("Adam learning rate.", "--lr", "--learning-rate"))
    weight_decay: float = field(default=0.0, metadata=flag("L2 penalty (Adam weight decay) on every weight."))
    max_train_samples: int | None = field(default=None, metadata=flag("Train on the first N train rows only "
                                                                      "(a slice)."))
    max_eval_samples: int | None = field(default=None, metadata=flag("Score the first N val / test rows only."))
    # --- MSD (model msd / msd-deepfm) ---
    knowledge: str | None = field(default=None, metadata=flag("MSD: `distill embed` folder (required without "
                                                              "--lora)."))
    adaptor_hidden: int = field(default=64, metadata=flag("MSD: hidden width of the feature adaptors."))
    top_k: int = field(default=3, metadata=flag("MSD: history items fused with the target."))
    fusion: str = field(default="gate", metadata=flag(
        f"MSD: how the top-k sum joins the target's vector, one of {', '.join(FUSIONS)} (concat: beside it; "
        "gate: added through a learned gate; add: the paper's sum; none: w/o item fusion)."))
    mask_rate: float = field(default=0.3, metadata=flag("MSD: the largest masking probability of a history item."))
    mask_by: str = field(default="frequent", metadata=flag(
        f"MSD: which history items are masked more, one of {', '.join(MASK_BY)} (by train exposures)."))
    standardize_vectors: bool = field(default=True, metadata=flag(
        "MSD: z-score each dimension of the cached vectors (statistics of the train items).",
        "--standardize-vectors/--raw-vectors"))
    user_level: bool = field(default=True, metadata=flag("MSD: add the user's semantic vector."))
    user_source: str = field(default="history", metadata=flag(
        f"MSD: the user vector, one of {', '.join(USER_SOURCES)} (history: mean over the sample's own history; "
        "table: the knowledge folder's user table, each user's vector from their users.jsonl snapshot and fed to "
        "that user's rows after its time only)."))
    lora: bool = field(default=False, metadata=flag("MSD: the student runs inside the forward pass and the CTR "
                                                    "loss trains LoRA adapters."))
    student: str = field(default=EMBEDDED_LLM, metadata=flag("MSD --lora: model folder, `distill train --lora` "
                                                             "adapter, hub id or the embedded alias."))
    lora_r: int = field(default=8, metadata=flag("MSD --lora: adapter rank."))
    lora_alpha: int = field(default=16, metadata=flag("MSD --lora: adapter alpha."))
    lora_dropout: float = field(default=0.0, metadata=flag("MSD --lora: adapter dropout."))
    lora_target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES),
                                           metadata=flag("MSD --lora: modules that get adapters."))
    lora_learning_rate: float = field(default=1e-4, metadata=flag("MSD --lora: learning rate of the adapters."))
    lora_layers: int | None = field(default=None, metadata=flag(
        "MSD --lora: adapters in the student's last N decoder layers only (none: every layer); the layers below "
        "run once per text and are kept, so a step runs N layers (2 of SmolLM2's 30: ~1/15 of the compute)."))
    student_max_length: int = field(default=64, metadata=flag("MSD --lora: tokens per item / user text."))
    student_max_history: int = field(default=10, metadata=flag("MSD --lora: items in a user's text."))
    # --- ELEC (model elec / elec-deepfm): the gain network is MSD with the settings above ---
    distill_score_weight: float = field(default=1.0, metadata=flag("ELEC: score distillation weight (0 = off)."))
    distill_repr_weight: float = field(default=1.0, metadata=flag("ELEC: representation distillation weight "
                                                                  "(0 = off)."))
    distill_temperature: float = field(default=1.0, metadata=flag("ELEC: score distillation temperature."))
    vanilla_hidden: list[int] | None = field(default=None, metadata=flag("ELEC: MLP sizes of the served vanilla "
                                                                         "network (default: --hidden)."))

    def __post_init__(self) -> None:
        self.data, self.output = str(self.data), str(self.output)
        self.knowledge = str(self.knowledge) if self.knowledge is not None else None
        self.hidden, self.attention_hidden = list(self.hidden), list(self.attention_hidden)
        self.lora_target_modules = list(self.lora_target_modules)
        self.vanilla_hidden = list(self.vanilla_hidden) if self.vanilla_hidden is not None else None
        for name, allowed in (("model", MODELS), ("fusion", FUSIONS), ("mask_by", MASK_BY),
                              ("user_source", USER_SOURCES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("embed_dim", "epochs", "patience", "batch_size", "eval_batch_size", "adaptor_hidden", "top_k",
                     "lora_r", "lora_alpha", "student_max_length", "student_max_history", "learning_rate",
                     "lora_learning_rate"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_history", "max_train_samples", "max_eval_samples", "lora_layers"):
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
        if self.lora_layers is not None and not self.lora:
            raise ConfigError("lora_layers needs --lora (it says which of the student's layers get adapters)")
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


# Settings renamed since a run folder was written: old ctr_config.json keys -> today's (value mapped).
RENAMED = {"item_fusion": ("fusion", lambda on: "add" if on else "none")}


def from_saved(values: dict) -> CTRConfig:
    """The config of a saved ctr_config.json, older key names read as today's (an old run's fusion was "add")."""
    values = dict(values)
    for old, (new, convert) in RENAMED.items():
        if old in values:
            values.setdefault(new, convert(values.pop(old)))
    if "fusion" not in values and values.get("model", "").startswith(("msd", "elec")):
        values["fusion"] = "add"  # written before `fusion` existed: the paper's addition
        values.setdefault("user_source", "table")  # ... and a user table (refused unless it is a snapshot)
    return CTRConfig(**values)


def resolve_config(yaml_path: str | Path | None, flags: dict) -> CTRConfig:
    """Defaults, then the YAML file, then the flags that were given."""
    return resolve(CTRConfig, yaml_path, flags)
