"""The config of `ctr serve` / `ctr warm` (no torch import: the CLI reads it to build its flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ctr.cache import CODECS, Codec
from ground.errors import ConfigError
from ground.flags import flag


ItemPath = Literal["adapted", "raw"]


@dataclass(kw_only=True)
class ServeConfig:
    """Everything `ctr serve` / `ctr warm` need."""

    model: str = field(metadata=flag("Run folder of `ctr train` (MSD, DIN, DeepFM or ELEC).", "--model", "-m"))
    student: str | None = field(default=None, metadata=flag(
        "Student that computes missing vectors (default: the model that wrote the run's knowledge tables, from "
        "its embed_config.json)."))
    redis: str | None = field(default=None, metadata=flag("Redis URL (redis://127.0.0.1:6379/0); none: the "
                                                          "in-process cache only."))
    host: str = field(default="127.0.0.1", metadata=flag("Address to listen on (loopback by default)."))
    port: int = field(default=8000, metadata=flag("Port to listen on."))
    lru_size: int = field(default=100_000, metadata=flag("Vectors kept in process (0 = none)."))
    codec: Codec = field(default="float16", metadata=flag(
        "Stored vector format: float16, int8 (with a scale) or float32 (exact)."))
    max_body_bytes: int = field(default=1 << 20, metadata=flag("Larger request bodies are refused (413)."))
    encode_batch_size: int = field(default=128, metadata=flag("Texts per student forward on a cache miss."))
    redis_timeout_s: float = field(default=0.25, metadata=flag("Seconds a Redis call may take."))
    item_path: ItemPath = field(default="adapted", metadata=flag(
        "MSD's item path: adapted (rows pre-computed per model version: adaptor output, the gate's item half, the "
        "user adaptor's first layer; cached like the raw vectors) or raw (every request adapts raw vectors)."))
    workers: int = field(default=1, metadata=flag("Server processes (uvicorn workers) on one port; each loads "
                                                  "the model and shares Redis."))
    redis_retry_s: float = field(default=1.0, metadata=flag("Seconds a down Redis is left alone before the next "
                                                            "try."))

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ConfigError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.item_path not in ("adapted", "raw"):
            raise ConfigError(f"item_path must be adapted or raw, got {self.item_path!r}")
        for name in ("max_body_bytes", "encode_batch_size", "port", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lru_size < 0 or self.redis_timeout_s <= 0 or self.redis_retry_s < 0:
            raise ConfigError(f"lru_size, redis_timeout_s, redis_retry_s must be >= 0 (timeout > 0), got "
                             f"{self.lru_size}, {self.redis_timeout_s}, {self.redis_retry_s}")
        if self.redis is not None and not self.redis.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"--redis must be a redis:// URL, got {self.redis!r}")
