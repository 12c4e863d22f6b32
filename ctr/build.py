"""The model a config names: a backbone, MSD around it, or ELEC's pair."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from ctr.data import Catalogue, Prepared
from ctr.elec import ELEC
from ctr.features import Features
from ctr.knowledge import MSD, StudentVectors, TableVectors, knowledge_fields, lora_student
from ctr.models.deepfm import DeepFM
from ctr.models.din import DIN
from ctr.train_config import CTRConfig
from ctr.user_table import train_window_users, user_times
from distill.embed import EmbedConfig, load_texts


def build_backbone(config: CTRConfig, features: Features, catalogue: Catalogue, n_extra: int) -> nn.Module:
    shared = dict(user_sizes=features.sizes(features.user_fields), item_sizes=features.sizes(features.item_fields),
                  item_table=catalogue.item_table, dim=config.embed_dim, hidden=config.hidden,
                  dropout=config.dropout, n_extra=n_extra)
    if config.backbone == "din":
        return DIN(**shared, attention_hidden=config.attention_hidden)
    return DeepFM(**shared)


def student_vectors(config: CTRConfig, data: Prepared) -> StudentVectors:
    """The LoRA student over the prepared folder's item and user texts (as `distill embed` renders them)."""
    users = data.folder / "users.jsonl"
    texts = EmbedConfig(model=config.student, items=data.folder / "items.jsonl", output=data.folder,
                        users=users if users.exists() else None, max_history=config.student_max_history)
    item_texts, user_texts = load_texts(texts)
    peft_model, tokenizer = lora_student(config.student, config.lora_r, config.lora_alpha, config.lora_dropout,
                                         config.lora_target_modules, top_layers=config.lora_layers)
    depth = peft_model.config.get_text_config().num_hidden_layers
    return StudentVectors(peft_model, tokenizer, [item_texts[i] for i in data.item_ids],
                          [user_texts.get(u, "") for u in data.user_ids], config.student_max_length,
                          frozen_below=depth - config.lora_layers if config.lora_layers else 0)


def build_vanilla(config: CTRConfig, features: Features, catalogue: Catalogue) -> nn.Module:
    """ELEC's served network: the backbone on tabular features only, `vanilla_hidden` MLP sizes when set."""
    return build_backbone(replace(config, hidden=config.vanilla_hidden or config.hidden), features, catalogue, 0)


def build_model(config: CTRConfig, features: Features, catalogue: Catalogue, data: Prepared) -> nn.Module:
    """The model a config names; MSD wraps its backbone with the knowledge fields; ELEC pairs MSD with a vanilla net."""
    if config.is_elec:
        return ELEC(gain=build_msd(config, features, catalogue, data), vanilla=build_vanilla(config, features, catalogue),
                    score_weight=config.distill_score_weight, repr_weight=config.distill_repr_weight,
                    temperature=config.distill_temperature)
    if not config.is_msd:
        return build_backbone(config, features, catalogue, n_extra=0)
    return build_msd(config, features, catalogue, data)


def build_msd(config: CTRConfig, features: Features, catalogue: Catalogue, data: Prepared) -> MSD:
    table_users = config.user_level and config.user_source == "table"
    as_of = user_times(None if config.lora else Path(config.knowledge), data) if table_users else None
    vectors = (student_vectors(config, data) if config.lora
               else TableVectors(config.knowledge, data, standardized=config.standardize_vectors,
                                 fit_items=catalogue.item_counts > 0, users=table_users,
                                 fit_users=None if as_of is None else train_window_users(as_of, data)))
    backbone = build_backbone(config, features, catalogue, n_extra=knowledge_fields(config.fusion, config.user_level))
    return MSD(backbone=backbone, vectors=vectors, item_counts=catalogue.item_counts, dim=config.embed_dim,
               adaptor_hidden=config.adaptor_hidden, top_k=config.top_k, mask_rate=config.mask_rate,
               mask_by=config.mask_by, fusion=config.fusion, user_level=config.user_level,
               user_source=config.user_source, user_as_of=as_of)
