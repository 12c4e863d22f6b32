"""Fixtures for the distill tests: a knowledge file and a tiny random Llama on the real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from distill_samples import knowledge_row, many_rows

from ground.files import write_jsonl


@pytest.fixture
def knowledge_file(tmp_path: Path) -> Path:
    """Twelve ok records plus one parse_error and one api_error."""
    rows = many_rows(12)
    bad = knowledge_row("22423", status="parse_error")
    bad.update(id="bad-1", key_phrases=[], explicit=[], implicit=[])
    failed = knowledge_row("84879", status="api_error")
    failed.update(id="bad-2", key_phrases=[], raw="")
    path = tmp_path / "knowledge.jsonl"
    write_jsonl(path, [*rows, bad, failed])
    return path


@pytest.fixture(scope="session")
def tokenizer_dir() -> str:
    """The real SmolLM2 tokenizer folder (materialised from the embedded GGUF once per machine)."""
    from kgen.models import resolve_llm

    return resolve_llm(None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tokenizer_dir) -> Path:
    """A 2-layer, 32-wide random Llama with SmolLM2's tokenizer and chat template, saved to a folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
