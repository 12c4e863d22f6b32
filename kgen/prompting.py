"""Rendering the prompt templates in `prompts/` into chat messages."""

from __future__ import annotations

from functools import cache

import jinja2

from kgen.teachers.base import Messages
from prompts import PROMPTS_DIR

TEACHER_TEMPLATES = {"item": "item", "user": "user"}
JSON_TEACHER_TEMPLATES = {"item": "item_json", "user": "user_json"}
STUDENT_TEMPLATES = {"item": "student_item", "user": "student_user"}
JSON_STUDENT_TEMPLATES = {"item": "student_item_json", "user": "student_user_json"}


@cache
def _env() -> jinja2.Environment:
    # StrictUndefined: a template that names a variable we do not pass is an error, not an empty string.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(template: str, **variables: object) -> str:
    """Render prompts/<template>.j2 with the given variables."""
    return _env().get_template(f"{template}.j2").render(**variables).strip()


def teacher_template(level: str, answer_format: str) -> str:
    """The teacher template of a level for an answer format ("text" or "json")."""
    return (JSON_TEACHER_TEMPLATES if answer_format == "json" else TEACHER_TEMPLATES)[level]


def student_template(level: str, answer_format: str) -> str:
    """The student's short template of a level for an answer format ("text" or "json")."""
    return (JSON_STUDENT_TEMPLATES if answer_format == "json" else STUDENT_TEMPLATES)[level]


def build_messages(template: str, input_text: str, example: dict | None = None) -> Messages:
    """The chat messages for one input: a single user turn holding the rendered template."""
    variables: dict[str, object] = {"input": input_text}
    if example is not None:
        variables["example"] = example
    return [{"role": "user", "content": render(template, **variables)}]
