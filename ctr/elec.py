"""ELEC (Dong, Ouyang, Liu, 2025): a gain network with the student's vectors, distilled into a tabular-only vanilla network.

A pseudo-siamese pair trained together on one loss:

    BCE(gain) + BCE(vanilla) + w_score * score_loss + w_repr * representation_loss

- gain network: MSD (ctr/knowledge.py) = a backbone (DIN or DeepFM) + the student's
  vectors of the target item, history items and user through the feature adaptors;
- vanilla network: the same kind of backbone on the tabular features only, with its
  own parameters (pseudo-siamese, nothing shared), so serving needs no LLM, no
  embedding table of the student and no adaptor;
- score distillation: T^2 * KL(Bernoulli(sigmoid(g / T)) || Bernoulli(sigmoid(v / T))),
  the soft-label BCE of Hinton et al. minus the target's entropy, so it is 0 exactly
  when the vanilla logit equals the gain logit;
- representation distillation: MSE between the vanilla backbone's last MLP hidden
  layer (through a linear projection when the widths differ) and the gain's.

The teacher side of both terms is detached: distillation moves only the vanilla
network (and the projection); the gain network learns from its own BCE alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ctr.data import Batch


def score_loss(vanilla_logits: torch.Tensor, gain_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * mean KL(Bern(sigmoid(gain / T)) || Bern(sigmoid(vanilla / T))); the gain side is detached. (B,), (B,) -> ()."""
    g, v = gain_logits.detach() / temperature, vanilla_logits / temperature
    p = torch.sigmoid(g)
    # log p - log q and log(1 - p) - log(1 - q) through logsigmoid: stable for large logits
    kl = p * (F.logsigmoid(g) - F.logsigmoid(v)) + (1 - p) * (F.logsigmoid(-g) - F.logsigmoid(-v))  # (B,)
    return temperature**2 * kl.mean()


def representation_loss(vanilla_hidden: torch.Tensor, gain_hidden: torch.Tensor,
                        projection: nn.Module | None = None) -> torch.Tensor:
    """MSE between the (projected) vanilla representation and the detached gain one. (B, Hv), (B, Hg) -> ()."""
    student = projection(vanilla_hidden) if projection is not None else vanilla_hidden  # (B, Hg)
    return F.mse_loss(student, gain_hidden.detach())


class HiddenTap:
    """Keeps the input of a backbone's last MLP layer (its last hidden representation) on each forward.

    A forward pre-hook rather than a second return value, so DIN and DeepFM keep their
    one-logit `forward` and the served vanilla network is a plain backbone.
    """

    def __init__(self, backbone: nn.Module):
        self.value: torch.Tensor | None = None
        self.width = backbone.dnn[-1].in_features
        backbone.dnn[-1].register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.value = inputs[0]  # (B, H)


@dataclass(kw_only=True)
class PairOutput:
    gain_logits: torch.Tensor  # (B,)
    vanilla_logits: torch.Tensor  # (B,)
    gain_hidden: torch.Tensor  # (B, Hg)
    vanilla_hidden: torch.Tensor  # (B, Hv)


class ELEC(nn.Module):
    """The gain network (MSD) and the vanilla network (a backbone) side by side; `forward` is the vanilla network's.

    Args:
        gain: MSD over a backbone built with the knowledge fields (n_extra = 1 + user_level).
        vanilla: a backbone of the same kind built without them (n_extra = 0); its own parameters.
        score_weight: weight of the score distillation term.
        repr_weight: weight of the representation distillation term.
        temperature: temperature of the score distillation.
    """

    def __init__(self, *, gain: nn.Module, vanilla: nn.Module, score_weight: float, repr_weight: float,
                 temperature: float):
        super().__init__()
        self.gain, self.vanilla = gain, vanilla
        self.score_weight, self.repr_weight, self.temperature = score_weight, repr_weight, temperature
        self.gain_tap, self.vanilla_tap = HiddenTap(gain.backbone), HiddenTap(vanilla)
        widths = (self.vanilla_tap.width, self.gain_tap.width)
        # Only when the served network is narrower than the gain's; equal widths compare as they are.
        self.projection = nn.Linear(*widths) if widths[0] != widths[1] else None

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.vanilla(batch)  # (B,) logits: what is validated, early-stopped on and served

    def pair(self, batch: Batch) -> PairOutput:
        """Both networks on one batch, with their last hidden representations."""
        gain_logits = self.gain(batch)
        vanilla_logits = self.vanilla(batch)
        return PairOutput(gain_logits=gain_logits, vanilla_logits=vanilla_logits,
                          gain_hidden=self.gain_tap.value, vanilla_hidden=self.vanilla_tap.value)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """What the training loop minimises: the weighted sum of the four terms."""
        return self.losses(batch)["total"]

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The four terms and their weighted sum ("total")."""
        out = self.pair(batch)
        terms = {"gain_bce": F.binary_cross_entropy_with_logits(out.gain_logits, batch.label),
                 "vanilla_bce": F.binary_cross_entropy_with_logits(out.vanilla_logits, batch.label),
                 "score": score_loss(out.vanilla_logits, out.gain_logits, self.temperature),
                 "repr": representation_loss(out.vanilla_hidden, out.gain_hidden, self.projection)}
        terms["total"] = (terms["gain_bce"] + terms["vanilla_bce"] + self.score_weight * terms["score"]
                          + self.repr_weight * terms["repr"])
        return terms


VANILLA_PREFIX = "vanilla."


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the vanilla backbone's weights with the prefix dropped, everything else: gain network and projection)."""
    vanilla = {k[len(VANILLA_PREFIX):]: v for k, v in state.items() if k.startswith(VANILLA_PREFIX)}
    rest = {k: v for k, v in state.items() if not k.startswith(VANILLA_PREFIX)}
    return vanilla, rest


