"""The student's body as a text encoder: mean-pooled last hidden states, batch by batch."""

from __future__ import annotations

from ground.vectors import mean_pool


def encode_texts(model, tokenizer, texts: list[str], batch_size: int, max_length: int, desc: str,
                 progress: bool = True):
    """(N, D) float32 numpy array of mean-pooled last hidden states, batch by batch (a progress bar unless off)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    out = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", dynamic_ncols=True,
                          disable=not progress):
            enc = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt").to(device)
            hidden = model(**enc).last_hidden_state  # (B, T, D)
            out.append(mean_pool(hidden.float(), enc["attention_mask"]).cpu().numpy())
    dim = model.config.get_text_config().hidden_size
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)


def load_encoder(model: str):
    """The student's transformer body (no LM head) and tokenizer; a LoRA adapter is merged first."""
    import torch

    from distill.export import load_causal_lm

    lm, tokenizer = load_causal_lm(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # mean pooling uses the mask, so either side works; right is the usual
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return lm.base_model.to(device).eval(), tokenizer  # base_model: the decoder stack, e.g. LlamaModel

