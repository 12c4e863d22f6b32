"""The text a model is shown for an item or a user: pure functions of the records."""

from __future__ import annotations

import re

from ground.records import ATTRIBUTES, HISTORY, NAME, PROFILE, USER_ID
from ground.errors import ConfigError, RecordError

PURCHASE_HEADER = "Purchase history (oldest first):"
# A history of films (items with genres: MovieLens) is a viewing history: headed as purchases, the teacher
# described movie viewers as shoppers ("Product Types: M").
VIEWING_HEADER = "Viewing history (oldest first):"
HISTORY_HEADERS = (PURCHASE_HEADER, VIEWING_HEADER)
PROFILE_MARK = "Profile: "
USER_HISTORY = 20  # the most recent items a user's input shows in the teacher's prompt (kgen generate --level user)
# A longer name is cut. Product names run under ~200 characters; a 100k-character "name" would otherwise
# overrun the model's context and run for minutes. 20 clipped names (~2,500 tokens) in a user's history
# still fit a 4k-token context with the one-shot example and the answer.
MAX_NAME_CHARS = 500
CLIP_MARK = " …"


def _name(item: dict) -> str:
    return str(item[NAME]).strip()


def item_input(item: dict) -> str:
    """The text shown for an item: its cleaned name (cut to MAX_NAME_CHARS), then what the dataset says of it.

    A release year and genres among the item's attributes (MovieLens) follow the name:
    "Toy Story (1995). Genres: Animation, Children's, Comedy". Nothing else is shown: a category that
    prepare derives from the name itself (Online Retail) adds no fact, and a price is not a property
    the teacher can describe.
    """
    name = _name(item)
    text = name if len(name) <= MAX_NAME_CHARS else name[:MAX_NAME_CHARS].rstrip() + CLIP_MARK
    attributes = item.get(ATTRIBUTES) or {}
    if attributes.get("year"):
        text += f" ({attributes['year']})"
    genres = attributes.get("genres") or []
    if genres:
        text += ". Genres: " + ", ".join(str(g) for g in genres)
    return text


def input_clipped(row: dict, items_by_id: dict[str, dict], max_history: int = USER_HISTORY) -> bool:
    """True when a name in the text shown for this item or user row was cut by `item_input`."""
    shown = [items_by_id.get(str(i)) for i in row[HISTORY][-max_history:]] if HISTORY in row else [row]
    return any(item is not None and len(_name(item)) > MAX_NAME_CHARS for item in shown)


def user_input(user: dict, items_by_id: dict[str, dict], max_history: int = USER_HISTORY) -> str:
    """The text shown for a user: their last `max_history` items under the history's header, then their profile.

    The header says "Viewing history" when every item shown is a film (it carries genres), else "Purchase history".
    """
    if max_history < 1:
        raise ConfigError(f"max_history must be at least 1, got {max_history}")
    # The most recent purchases say most about what the user wants now.
    recent = [str(i) for i in user[HISTORY]][-max_history:]
    shown = []
    for item_id in recent:
        item = items_by_id.get(item_id)
        if item is None:
            raise RecordError(f"user {user[USER_ID]}: history item {item_id!r} is not among the item records")
        shown.append(item)
    films = bool(shown) and all((item.get(ATTRIBUTES) or {}).get("genres") for item in shown)
    lines = [VIEWING_HEADER if films else PURCHASE_HEADER]
    lines += [f"{n}. {item_input(item)}" for n, item in enumerate(shown, start=1)]
    profile = user.get(PROFILE)
    if profile:
        lines.append(PROFILE_MARK + ", ".join(f"{k}={profile[k]}" for k in sorted(profile)))
    return "\n".join(lines)


_LIST_MARK = re.compile(r"^\d+\.\s+")


def input_segments(text: str) -> list[str]:
    """The pieces of an input text a phrase may be cut from: an item's name, or each history name and profile value."""
    segments = []
    for line in text.split("\n"):
        line = line.strip()
        if not line or line in HISTORY_HEADERS:
            continue
        if line.startswith(PROFILE_MARK):
            segments += [part.split("=", 1)[-1] for part in line[len(PROFILE_MARK):].split(", ")]
            continue
        segments.append(_LIST_MARK.sub("", line))
    return segments
