"""The text a model is shown for an item or a user: pure functions of the records."""

from __future__ import annotations

from kgen.records import HISTORY, NAME, PROFILE, USER_ID

HISTORY_HEADER = "Purchase history (oldest first):"


def item_input(item: dict) -> str:
    """The text shown for an item: its cleaned name."""
    return str(item[NAME]).strip()


def user_input(user: dict, items_by_id: dict[str, dict], max_history: int = 20) -> str:
    """The text shown for a user: the names of their last `max_history` purchases, then their profile."""
    if max_history < 1:
        raise ValueError(f"max_history must be at least 1, got {max_history}")
    # The most recent purchases say most about what the user wants now.
    recent = [str(i) for i in user[HISTORY]][-max_history:]
    lines = [HISTORY_HEADER]
    for n, item_id in enumerate(recent, start=1):
        item = items_by_id.get(item_id)
        if item is None:
            raise ValueError(f"user {user[USER_ID]}: history item {item_id!r} is not among the item records")
        lines.append(f"{n}. {item_input(item)}")
    profile = user.get(PROFILE)
    if profile:
        lines.append("Profile: " + ", ".join(f"{k}={profile[k]}" for k in sorted(profile)))
    return "\n".join(lines)
