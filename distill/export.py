"""Turning a trained student (full model or LoRA adapter) into a plain Hugging Face model folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ground.errors import RecordError
from ground.files import check_output_folder, folder_beside, write_json
from kgen.models import loading_model, resolve_llm

ADAPTER_CONFIG = "adapter_config.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def is_adapter(model_dir: str | Path) -> bool:
    """True for a LoRA adapter folder (what `distill train --lora` saves)."""
    return (Path(model_dir) / ADAPTER_CONFIG).exists()


def fingerprint(model_dir: str | Path) -> str:
    """A short hash of a model folder's weights and configs: retraining in place gives a new one."""
    folder = Path(model_dir)
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.suffix == ".json"))
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def adapter_base(adapter_dir: Path) -> str:
    """The base model an adapter was trained on, re-resolved when the recorded path is gone (another machine)."""
    base = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    train_config = adapter_dir / "train_config.json"
    if not Path(base).exists() and train_config.exists():
        return resolve_llm(json.loads(train_config.read_text())["student"])
    return base


def merge_adapter(base_model, adapter_dir: str | Path):
    """Fold a LoRA adapter into its base model in memory (B @ A added to the weights): as fast as the base."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(adapter_dir)).merge_and_unload()


def student_path(model: str | Path) -> str:
    """A model folder as given, or the embedded alias / a hub id resolved; a missing folder, or one that
    holds no model, raises RecordError."""
    text = str(model)
    if Path(text).is_dir():
        if not any((Path(text) / name).is_file() for name in ("config.json", ADAPTER_CONFIG)):
            raise RecordError(f"{text}: not a model folder (no config.json or {ADAPTER_CONFIG}); "
                                "give the output of `distill train` or `distill export`")
        return text
    if text.startswith(("/", ".", "~")) or text.count("/") > 1:
        raise RecordError(f"{text}: no such model folder")
    return resolve_llm(text)


def load_causal_lm(model: str | Path):
    """(model, tokenizer) from a full model folder, an adapter folder (merged), a hub id or the embedded alias."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = student_path(model)
    with loading_model(str(model)):
        if not is_adapter(path):
            return AutoModelForCausalLM.from_pretrained(path, dtype="float32"), AutoTokenizer.from_pretrained(path)
        base_path = adapter_base(Path(path))
        # TRL saves the tokenizer beside the adapter; an adapter saved without one uses its base's.
        tokenizer = AutoTokenizer.from_pretrained(path if (Path(path) / "tokenizer_config.json").exists() else base_path)
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype="float32")
    return merge_adapter(base, path), tokenizer


def export_model(model_dir: str | Path, output: str | Path) -> dict:
    """Write a merged, plain HF model folder (+ tokenizer, export_config.json); return its config."""
    output = check_output_folder(output)
    model, tokenizer = load_causal_lm(model_dir)
    with folder_beside(output) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        # Files already in the output (e.g. embedding tables) stay; the model files are replaced.
        output.mkdir(exist_ok=True)
        for path in tmp.iterdir():
            path.replace(output / path.name)
        tmp.rmdir()
    config = {
        "source": str(model_dir),
        "source_fingerprint": fingerprint(model_dir) if Path(model_dir).is_dir() else None,
        "merged_adapter": is_adapter(model_dir),
        "base_model": adapter_base(Path(model_dir)) if is_adapter(model_dir) else None,
        "architecture": type(model).__name__,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    write_json(output / "export_config.json", config)
    return config
