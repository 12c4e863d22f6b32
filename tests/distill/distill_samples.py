"""Sample knowledge records for the distill tests (teacher-style answers written by hand)."""

from __future__ import annotations

import json
from pathlib import Path

from kgen.parse import format_answer


def aspect(name: str, value: str, rationale: str) -> dict:
    return {"aspect": name, "value": value, "rationale": rationale}


# Hand-written teacher-style answers: explicit values copied from the name, implicit ones inferred.
ITEMS = {
    "85123A": ("WHITE HANGING HEART T-LIGHT HOLDER",
               [aspect("Colour", "White", "The product name says white."),
                aspect("Type", "T-Light Holder", "The product name states it is a t-light holder."),
                aspect("Design", "Hanging Heart", "The name mentions a hanging heart.")],
               [aspect("Occasion", "Gift", "Heart-shaped holders are a popular gift."),
                aspect("Style", "Home Decor", "Candle holders are home decor; a nice gift for a new home.")],
               ["White", "Hanging Heart", "T-Light Holder", "Gift", "Home Decor"]),
    "22423": ("REGENCY CAKESTAND 3 TIER",
              [aspect("Type", "Cakestand", "The name says cakestand."),
               aspect("Size", "3 Tier", "The name specifies 3 tiers.")],
              [aspect("Occasion", "Afternoon Tea, Parties", "Tiered stands serve cakes at afternoon tea."),
               aspect("Style", "Vintage", "Regency refers to a vintage period style.")],
              ["Cakestand", "3 Tier", "Afternoon Tea", "Vintage", "Regency"]),
    "84879": ("ASSORTED COLOUR BIRD ORNAMENT",
              [aspect("Type", "Ornament", "The name says ornament."),
               aspect("Motif", "Bird", "The name mentions a bird.")],
              [aspect("Use", "Christmas Decoration", "Small bird ornaments are hung on Christmas trees."),
               aspect("Occasion", "Gift", "An inexpensive gift item.")],
              ["Bird", "Ornament", "Assorted Colour", "Christmas Decoration", "Gift"]),
}


def knowledge_row(rid: str, level: str = "item", status: str = "ok") -> dict:
    name, explicit, implicit, phrases = ITEMS[rid]
    return {"id": rid, "level": level, "input": name, "explicit": explicit, "implicit": implicit,
            "key_phrases": phrases, "raw": format_answer(explicit, implicit, phrases), "model": "fake:teacher",
            "template": level, "reference_id": None, "status": status}


def many_rows(n: int) -> list[dict]:
    """n ok records with distinct ids, cycling through the hand-written answers."""
    keys = list(ITEMS)
    rows = []
    for i in range(n):
        row = knowledge_row(keys[i % len(keys)])
        row["id"] = f"{row['id']}-{i}"
        rows.append(row)
    return rows


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


SAMPLE_ITEMS = [
    {"item_id": "85123A", "name": "WHITE HANGING HEART T-LIGHT HOLDER", "category": "home"},
    {"item_id": "22423", "name": "REGENCY CAKESTAND 3 TIER", "category": "kitchen"},
    {"item_id": "84879", "name": "ASSORTED COLOUR BIRD ORNAMENT", "category": "christmas"},
]
SAMPLE_USERS = [
    {"user_id": "u12347", "history": ["85123A", "22423"]},
    {"user_id": "u12348", "history": ["84879"]},
]


class CannedStudent:
    """A stand-in student for logic tests: records the prompts it gets and answers with a fixed text."""

    def __init__(self, answer: str, model: str = "fake:student"):
        self.answer, self.model, self.prompts, self.schemas = answer, model, [], []

    def complete(self, prompts, settings, schemas=None):
        from kgen.teachers.base import Completion

        for i, messages in enumerate(prompts):
            self.prompts.append(messages)
            self.schemas.append(schemas[i] if schemas else None)
            yield i, Completion(self.answer, "ok", 10, 20)

    def close(self) -> None:
        pass
