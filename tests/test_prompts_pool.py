"""The shipped prompt data: templates render strictly, the reference pool parses, the dictionary is well formed."""

import json
import re

import jinja2
import pytest

from kgen.inputs import PURCHASE_HEADER, VIEWING_HEADER
from kgen.parse import parse_answer
from ground.records import ASPECT, CATEGORY, ID, INPUT, KEY_PHRASES, LEVEL, RATIONALE, VALUE
from kgen.reference import ANSWER, POOL_FILES, load_pool
from prompts import PROMPTS_DIR

MIN_POOL = {"item": 40, "user": 15}
EXAMPLE = {INPUT: "Retro Enamel Bread Bin Blue", ANSWER: "Explicit Information:\nType: Bread Bin. Named.\nKey Features: Bread Bin"}
TEMPLATE_VARIABLES = {
    "item": {"input": "Zinc Star Garland Gold", "example": EXAMPLE},
    "user": {"input": f"{PURCHASE_HEADER}\n1. Zinc Star Garland Gold\n2. Pack of 12 Paper Plates", "example": EXAMPLE},
    "student_item": {"input": "Zinc Star Garland Gold"},
    "student_user": {"input": f"{PURCHASE_HEADER}\n1. Zinc Star Garland Gold\n2. Pack of 12 Paper Plates"},
}
TEACHER = ("item", "user")


def _render(template: str, variables: dict) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PROMPTS_DIR), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.get_template(f"{template}.j2").render(**variables)


def _rows(level: str) -> list[dict]:
    with (PROMPTS_DIR / POOL_FILES[level]).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _all_rows() -> list[dict]:
    return _rows("item") + _rows("user")


def _synonym_groups() -> list[list[str]]:
    lines = (PROMPTS_DIR / "synonyms.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines if line.strip() and not line.startswith("#")]


# --- templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("template", sorted(TEMPLATE_VARIABLES))
def test_template_renders_its_input_and_asks_for_the_answer_format(template):
    variables = TEMPLATE_VARIABLES[template]
    text = _render(template, variables)
    assert variables["input"] in text
    for marker in ("Explicit Information", "Implicit Information", "Key Features", "Aspect: Value. Rationale"):
        assert marker in text
    # The model continues right after the cue, so the input must come last.
    assert text.rstrip().endswith(variables["input"] + "\nThought Process:")


@pytest.mark.parametrize("template", TEACHER)
def test_teacher_template_shows_the_example_before_the_input(template):
    variables = TEMPLATE_VARIABLES[template]
    text = _render(template, variables)
    example_at = text.index(EXAMPLE[ANSWER])
    assert text.index(EXAMPLE[INPUT]) < example_at < text.rindex(variables["input"])
    assert "Thought Process:\n" + EXAMPLE[ANSWER] in text


@pytest.mark.parametrize("template", ["student_item", "student_user"])
def test_student_template_has_no_reference_example(template):
    text = _render(template, TEMPLATE_VARIABLES[template])
    assert text.count("Thought Process:") == 1
    assert "example" not in text.casefold()


@pytest.mark.parametrize("template", ["student_item_json", "student_user_json"])
def test_student_json_template_asks_for_the_schema_fields_and_shows_no_example(template):
    variables = TEMPLATE_VARIABLES[template.removesuffix("_json")]
    text = _render(template, variables)
    assert all(f'"{key}"' in text for key in ("explicit", "implicit", "aspect", "value"))
    assert "example" not in text.casefold()
    assert text.rstrip().endswith(variables["input"] + "\nAnswer:")
    with pytest.raises(jinja2.UndefinedError):
        _render(template, {})


@pytest.mark.parametrize(("template", "missing"), [(t, v) for t in sorted(TEMPLATE_VARIABLES) for v in TEMPLATE_VARIABLES[t]])
def test_template_fails_on_a_missing_variable(template, missing):
    variables = {k: v for k, v in TEMPLATE_VARIABLES[template].items() if k != missing}
    with pytest.raises(jinja2.UndefinedError):
        _render(template, variables)


@pytest.mark.parametrize("template", TEACHER)
def test_teacher_template_fails_on_an_example_without_answer(template):
    variables = {**TEMPLATE_VARIABLES[template], "example": {INPUT: EXAMPLE[INPUT]}}
    with pytest.raises(jinja2.UndefinedError):
        _render(template, variables)


@pytest.mark.parametrize("template", sorted(TEMPLATE_VARIABLES))
def test_template_instructions_stay_short(template):
    # A 135M model reads these on CPU: every instruction word costs time on every call.
    empty = {k: ({INPUT: "", ANSWER: ""} if k == "example" else "") for k in TEMPLATE_VARIABLES[template]}
    limit = 160 if template in TEACHER else 60
    assert len(_render(template, empty).split()) <= limit


def test_kgen_renders_a_pool_record_as_the_example():
    from kgen.prompting import render

    example = load_pool("item")[0]
    text = render("item", input="Zinc Star Garland Gold", example=example)
    assert f"Product Name: {example[INPUT]}\nThought Process:\n{example[ANSWER]}" in text


# --- reference pool ----------------------------------------------------------------------------


@pytest.mark.parametrize("level", sorted(POOL_FILES))
def test_pool_size_levels_and_fields(level):
    rows = _rows(level)
    assert len(rows) >= MIN_POOL[level]
    for row in rows:
        assert row[LEVEL] == level
        assert re.fullmatch(rf"pool-{level}-\d\d+", row[ID]), row[ID]
        for name in (CATEGORY, INPUT, ANSWER):
            assert isinstance(row[name], str) and row[name].strip(), (row[ID], name)
        assert row[KEY_PHRASES] and all(isinstance(p, str) and p.strip() for p in row[KEY_PHRASES]), row[ID]
    assert len(load_pool(level)) == len(rows)  # the loader kgen uses accepts every row


def test_pool_ids_and_inputs_are_unique():
    rows = _all_rows()
    assert len({r[ID] for r in rows}) == len(rows)
    assert len({" ".join(r[INPUT].casefold().split()) for r in rows}) == len(rows)


def test_item_pool_spans_many_categories():
    assert len({r[CATEGORY] for r in _rows("item")}) >= 12


def test_user_inputs_use_the_history_rendering():
    for row in _rows("user"):
        lines = row[INPUT].split("\n")
        if lines[-1].startswith("Profile: "):
            lines = lines[:-1]
        history = lines[1:]
        films = all(". Genres: " in line for line in history)
        assert lines[0] == (VIEWING_HEADER if films else PURCHASE_HEADER), row[ID]
        assert 4 <= len(history) <= 10, row[ID]
        for n, line in enumerate(history, start=1):
            assert re.fullmatch(rf"{n}\. \S.*", line), (row[ID], line)


@pytest.mark.parametrize("row", _all_rows(), ids=lambda r: r[ID])
def test_pool_answer_parses_to_its_key_phrases(row):
    parsed = parse_answer(row[ANSWER])
    assert parsed.status == "ok", parsed.error
    assert parsed.key_phrases_from == "key_features"
    assert parsed.key_phrases == row[KEY_PHRASES]
    assert parsed.explicit and parsed.implicit
    for aspect in parsed.explicit + parsed.implicit:
        assert aspect[ASPECT] and aspect[VALUE] and aspect[RATIONALE], aspect


@pytest.mark.parametrize("row", _all_rows(), ids=lambda r: r[ID])
def test_pool_answer_follows_the_writing_rules(row):
    parsed = parse_answer(row[ANSWER])
    assert 3 <= len(parsed.explicit) <= 5 and 2 <= len(parsed.implicit) <= 4
    assert 5 <= len(row[KEY_PHRASES]) <= 10
    assert all(1 <= len(p.split()) <= 4 for p in row[KEY_PHRASES]), row[KEY_PHRASES]
    assert len({p.casefold() for p in row[KEY_PHRASES]}) == len(row[KEY_PHRASES])
    assert len(row[ANSWER].split()) <= 160


def test_pool_holds_the_papers_worked_examples():
    phrases = {r[INPUT]: r[KEY_PHRASES] for r in _rows("item")}
    assert phrases["COSTA Classic Blend Coffee Beans 200g"] == [
        "COSTA", "Classic Blend", "Coffee Beans", "200g", "Professional Grade", "Rich Aroma", "Well-known Brand",
        "Home and Office Use"]
    assert phrases["Coca-Cola Zero Sugar 1.25L"] == [
        "Coca-Cola", "Zero Sugar Beverage", "1.25L", "Low-Calorie", "Health-Conscious", "Suitable for Gatherings"]


# --- substitution dictionary ---------------------------------------------------------------------


def test_synonyms_file_explains_its_format():
    first = (PROMPTS_DIR / "synonyms.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("#")


def test_synonym_groups_are_well_formed():
    groups = _synonym_groups()
    assert len(groups) >= 80
    seen: dict[str, int] = {}
    for n, group in enumerate(groups):
        assert len(group) >= 2, group
        for phrase in group:
            assert phrase.strip() == phrase and phrase, group
            assert "#" not in phrase, group
            assert seen.setdefault(phrase.casefold(), n) == n, f"{phrase!r} is in two groups"


def test_dictionary_loads_and_reaches_most_pool_answers():
    from distill.augment import eligible_phrases, load_dictionary, phrase_pattern

    pattern = phrase_pattern(load_dictionary(PROMPTS_DIR / "synonyms.tsv"))
    rows = _all_rows()
    reached = [r for r in rows if eligible_phrases(parse_answer(r[ANSWER]), pattern, r[INPUT])]
    # Substitution only helps if the dictionary covers the pool's vocabulary.
    assert len(reached) >= 0.9 * len(rows)
