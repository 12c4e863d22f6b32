"""Before serving: annotator accounts, roles, loading the knowledge records and assigning them."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from annotate.assign import AssignConfig, plan_assignments
from annotate.store import Store, item_key
from ground.errors import ConfigError, RecordError
from ground.files import read_lines
from ground import records as R

_USER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def parse_account(text: str, where: str = "--auth") -> tuple[str, str]:
    """`user:password` -> (user, password); the password may itself hold colons."""
    user, sep, password = text.partition(":")
    user = user.strip()
    if not sep or not password:
        raise ConfigError(f"{where}: expected user:password, got {text.split(':', 1)[0]!r} without a password")
    if not _USER.match(user):
        raise ConfigError(f"{where}: user name {user!r} may hold only letters, digits and _ . @ -")
    return user, password


def read_accounts_file(path: Path) -> list[tuple[str, str]]:
    """Accounts from a file, one `user:password` a line; blank lines and `#` comments skipped."""
    accounts = []
    for lineno, line in read_lines(path):
        if line.strip() and not line.lstrip().startswith("#"):
            accounts.append(parse_account(line.strip(), f"{path}:{lineno}"))
    return accounts


def check_roles(accounts: list[tuple[str, str]], reviewers: list[str]) -> list[str]:
    """The annotators (accounts that are not reviewers); fails on duplicates or unknown reviewers."""
    names = [u for u, _ in accounts]
    if not names:
        raise ConfigError("no accounts: give --auth user:password (repeatable) or --auth-file")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"account {repeated[0]!r} is given more than once")
    unknown = [r for r in reviewers if r not in names]
    if unknown and ":" in unknown[0]:
        user = unknown[0].split(":", 1)[0]
        raise ConfigError(f"--reviewer takes an account name, not user:password: give --auth {unknown[0]} --reviewer {user}")
    if unknown:
        raise ConfigError(f"--reviewer {unknown[0]!r} has no account; add it with --auth {unknown[0]}:<password>")
    annotators = [n for n in names if n not in reviewers]
    if not annotators:
        raise ConfigError("every account is a reviewer; at least one annotator account is needed")
    return annotators


def read_knowledge(path: Path) -> list[dict]:
    """Knowledge records, one per (level, id); a repeated id is an error naming its line."""
    rows = R.read_records(path, "knowledge")
    seen: dict[str, int] = {}
    for lineno, row in enumerate(rows, start=1):
        key = item_key(row)
        if key in seen:
            raise RecordError(f"{path}: record {lineno} repeats level={row[R.LEVEL]} id={row[R.ID]} "
                                f"(first at record {seen[key]}); keep one answer per id")
        seen[key] = lineno
    return rows


def prepare_store(store: Store, records: list[dict], annotators: list[str], config: AssignConfig) -> dict:
    """Add new records, assign the items that have no annotators yet; return what changed."""
    added, differing = store.add_items(records)
    keys = [item_key(r) for r in store.items()]
    plan = plan_assignments(keys, annotators, config, existing=store.assignments())
    pairs = store.assign(plan)
    stored = store.get_meta("assign_config")
    store.set_meta("assign_config", json.dumps(asdict(config)))
    return {"items": len(keys), "new_items": added, "differing_items": differing, "new_assignments": pairs,
            "config_changed": stored is not None and json.loads(stored) != asdict(config)}
