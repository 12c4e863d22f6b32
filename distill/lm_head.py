"""The student's LM head only where the loss is: completion positions, a few hundred at a time.

TRL's SFTTrainer calls `model(..., fused_lm_head=True)` and reads per-token log-probabilities, entropy and
top-1 hits from the result. On CUDA its Triton kernel scores only the positions that have a label. Without
Triton (CPU) it scores every position, prompt and padding included, in tiles of 4096 tokens x 32768 vocab
entries whose float temporaries take several GB at batch 8. This head scores only the completion positions,
`chunk` of them at a time, and recomputes each chunk's logits in the backward pass (activation
checkpointing), so at most one (chunk, vocab) block of logits is alive at any moment.
"""

from __future__ import annotations

import functools
import types

import torch
from torch.utils.checkpoint import checkpoint

IGNORE = -100  # the label of positions without loss (the prompt, padding)
CHUNK = 64  # completion positions per block: (64, 49152) fp32 logits are 12 MiB


def _block(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """hidden (n, H), weight (V, H), targets (n,) -> log p(target) (n,), entropy (n,), target is top-1 (n,)."""
    logits = (hidden @ weight.t()).float()  # (n, V)
    log_p = torch.log_softmax(logits, dim=-1)  # (n, V)
    target_log_p = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (n,)
    with torch.no_grad():  # metrics only
        entropy = -(log_p.exp() * log_p).sum(-1)
        is_top1 = logits.argmax(-1) == targets
    return target_log_p, entropy, is_top1


def completion_log_probs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-position log p(target), entropy and top-1 hit for hidden (N, H) and targets (N,), `chunk` rows at a time."""
    parts = [checkpoint(_block, hidden[i:i + chunk], weight, targets[i:i + chunk], use_reentrant=False)
             for i in range(0, hidden.shape[0], chunk)]
    if not parts:  # a batch without completion tokens: a differentiable zero
        zero = hidden.sum(-1)[:0].float()
        return zero, zero.detach(), zero.detach().bool()
    return tuple(torch.cat(column) for column in zip(*parts))  # type: ignore[return-value]


def _scatter(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) values at the True places of mask (B, T-1), zeros elsewhere; keeps the graph even when N is 0."""
    return values.new_zeros(mask.shape).masked_scatter(mask, values)


_SCALES = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def plain_head(model) -> bool:
    """True when the logits are just hidden @ W.T (Llama, Qwen, Mistral, SmolLM2): no bias, scale or soft cap."""
    config = model.config.get_text_config()
    head = model.get_output_embeddings()
    return head is not None and getattr(head, "bias", None) is None and all(
        getattr(config, name, None) in (None, 1.0) for name in _SCALES)


def add_completion_lm_head(model, chunk: int = CHUNK) -> None:
    """Make `model(..., labels=..., fused_lm_head=True)` score only labelled positions (see the module docstring).

    Call it on the base model after SFTTrainer has added its own fused head; other calls go to the forward
    that was there before, so generation and evaluation without `fused_lm_head` are unchanged.
    """
    from trl.trainer.utils import FusedCausalLMOutput

    if not plain_head(model):
        return  # scaled or soft-capped logits (Gemma, Granite, ...): TRL's head knows them
    previous = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or kwargs.get("shift_labels") is not None or kwargs.get("output_router_logits"):
            return previous(*args, fused_lm_head=fused_lm_head, labels=labels, num_items_in_batch=num_items_in_batch,
                            **kwargs)  # sequence parallelism and MoE models keep TRL's head
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]  # (B, T-1, H)
        targets = labels[:, 1:]  # (B, T-1): the next token of each position
        mask = targets != IGNORE
        weight = self.get_output_embeddings().weight  # (V, H)
        log_p, entropy, is_top1 = completion_log_probs(hidden[mask], weight, targets[mask], chunk)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_p.sum() / count, log_probs=_scatter(log_p, mask),
                                   entropy=_scatter(entropy, mask), is_top1=_scatter(is_top1, mask), label_mask=mask)

    model.forward = types.MethodType(forward, model)
