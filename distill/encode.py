"""The student's body as a text encoder: a layer's hidden states pooled over each text, batch by batch."""

from __future__ import annotations

from typing import Literal, get_args

from ground.errors import ConfigError
from ground.vectors import mean_pool

Pooling = Literal["mean", "last"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
LAST_LAYER = -1  # the last hidden state, after the model's final norm


def check_readout(layer: int, pooling: str, layers: int | None = None) -> None:
    """A layer in -1 (the last hidden state) or 0 (the token embeddings) .. `layers` (the last block's output)."""
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if layer < LAST_LAYER or (layers is not None and layer > layers):
        top = f"..{layers}" if layers is not None else " or above"
        raise ConfigError(f"layer must be -1 (the last hidden state) or 0{top}, got {layer}")


def readout(model, enc, layer: int, pooling: str):
    """(B, D) one vector per text: the layer's hidden states, mean-pooled over the text's tokens or the last one."""
    import torch

    if layer in (LAST_LAYER, model.config.get_text_config().num_hidden_layers):
        hidden = model(**enc).last_hidden_state  # (B, T, D) after the final norm
    else:
        hidden = model(**enc, output_hidden_states=True).hidden_states[layer]  # 0: the token embeddings
    mask = enc["attention_mask"]
    if pooling == "mean":
        return mean_pool(hidden.float(), mask)
    last = mask.sum(1) - 1  # the last real token (right padding)
    return hidden.float()[torch.arange(len(hidden), device=hidden.device), last]


def encode_texts(model, tokenizer, texts: list[str], batch_size: int, max_length: int, desc: str,
                 progress: bool = True, layer: int = LAST_LAYER, pooling: str = "mean"):
    """(N, D) float32 numpy array of a layer's pooled hidden states (by default the mean of the last hidden state
    over each text's tokens), batch by batch (a progress bar unless off)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    check_readout(layer, pooling, model.config.get_text_config().num_hidden_layers)
    out = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", dynamic_ncols=True,
                          disable=not progress):
            enc = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt").to(device)
            out.append(readout(model, enc, layer, pooling).cpu().numpy())
    dim = model.config.get_text_config().hidden_size
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)


def load_encoder(model: str):
    """The student's transformer body (no LM head) and tokenizer; a LoRA adapter is merged first."""
    import torch

    from distill.export import load_causal_lm

    lm, tokenizer = load_causal_lm(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # "last" pooling reads the last real token at mask.sum() - 1
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return lm.base_model.to(device).eval(), tokenizer  # base_model: the decoder stack, e.g. LlamaModel


def load_sentence_encoder(name: str, max_length: int, normalize: bool):
    """An eval.embedder.Embedder over a sentence-transformers model by name or path ('all-minilm-l6-v2': the
    bundled MiniLM), reading at most `max_length` tokens per text. Without `normalize` a final Normalize layer is
    taken off: the vectors stay the raw pooled ones (`ctr train` z-scores them); with it they have unit length."""
    from eval.embedder import Embedder

    embedder = Embedder(name)
    model = embedder.model  # loaded here: an unknown name is a one-line error; on CUDA when there is one
    if not normalize and len(model) and type(model[len(model) - 1]).__name__ == "Normalize":
        del model[len(model) - 1]
    model.max_seq_length = max_length
    return embedder


def sentence_pooling(model) -> str | None:
    """The pooling mode of a sentence-transformers model ('mean', 'cls', ...), None when it has no Pooling layer."""
    pooling = [m for m in model if type(m).__name__ == "Pooling"]  # by name: the module path moved in ST 5
    return pooling[0].get_config_dict().get("pooling_mode") if pooling else None


def encode_sentences(embedder, texts: list[str], batch_size: int, normalize: bool, desc: str):
    """(N, D) float32 numpy array from a sentence-transformers model, batch by batch with a progress bar; a text
    the model cannot read (over 30% [UNK] tokens: CJK for the English MiniLM) is refused first (eval.embedder)."""
    import numpy as np

    from eval.embedder import EmbedderError

    try:
        embedder.check_texts(texts)
    except EmbedderError as exc:  # the eval commands call the setting --embedder; here it is --encoder
        raise EmbedderError(str(exc).replace("--embedder", "--encoder")) from None
    if desc:  # a server's misses (desc "") go quietly
        print(f"{desc}: {len(texts)} texts", flush=True)
    vectors = embedder.model.encode(texts, batch_size=batch_size, normalize_embeddings=normalize,
                                    show_progress_bar=bool(desc), convert_to_numpy=True)
    return np.asarray(vectors, np.float32).reshape(len(texts), -1)


def count_cut(tokenizer, texts: list[str], max_length: int) -> int:
    """How many texts have more than `max_length` tokens (special tokens included), so their end is cut."""
    lengths = [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]] if texts else []
    return sum(n > max_length for n in lengths)
