"""The answer parser: the paper's worked examples as golden tests, and what real models write."""

from kgen.parse import format_answer, parse_answer, split_phrases

# Figure 3 of the MSD paper (the COSTA one-shot example), as the PDF lays it out.
COSTA = """Explicit Information
        Brand: COSTA. The product name directly mentions the brand as COSTA.
        Type: Coffee Beans. The product name clearly states it is coffee beans.
        Blend: Classic Blend. The product name mentions it is a classic blend, indicating a specific proportion of mixed coffee beans.
        Weight: 200g. The product name specifies the weight as 200g.

    Implicit Information
        Quality: Professional Grade. COSTA is a well-known coffee brand, usually implying high quality and professionalism in its products.
        Flavor: Rich Aroma, Full-bodied. Classic blend coffee beans typically have a rich aroma and full-bodied flavor, which can be inferred from the brand and product type.
        Suitable Scenarios: Home or Office Use.  The 200g packaging is suitable for daily use at home or in the office.

Key Features:
    COSTA, Classic Blend, Coffee Beans, 200g, Professional Grade, Rich Aroma, Well-known Brand, Home and Office Use
"""
COSTA_PHRASES = ["COSTA", "Classic Blend", "Coffee Beans", "200g", "Professional Grade", "Rich Aroma",
                 "Well-known Brand", "Home and Office Use"]

# Figure 1 of the MSD paper (item level, Coca-Cola Zero Sugar 1.25L), rationale on its own line as drawn.
COKE = """Explicit Information
Brand: Coca-Cola.
The product name directly mentions the brand as Coca-Cola.
Type: Zero Sugar Beverage.
The product name indicates it is a zero sugar variant of a beverage.
Volume: 1.25L.
The product name specifies the volume as 1.25 liters.
Implicit Information
Calorie Content: Low-Calorie.
The "Zero Sugar" label suggests that the beverage is low in calories.
Target Audience: Health-Conscious.
The zero sugar variant is typically aimed at consumers who are mindful of their sugar intake.
Consumption Scenarios: Gatherings.
The 1.25L size is convenient for sharing during gatherings.
Key Features: Coca-Cola, Zero Sugar Beverage, 1.25L,
Low-Calorie, Health-Conscious, Suitable for Gatherings
"""
COKE_PHRASES = ["Coca-Cola", "Zero Sugar Beverage", "1.25L", "Low-Calorie", "Health-Conscious", "Suitable for Gatherings"]


def test_costa_figure3_golden():
    parsed = parse_answer(COSTA)
    assert parsed.status == "ok"
    assert parsed.key_phrases == COSTA_PHRASES
    assert [a["aspect"] for a in parsed.explicit] == ["Brand", "Type", "Blend", "Weight"]
    assert [a["value"] for a in parsed.implicit] == ["Professional Grade", "Rich Aroma, Full-bodied", "Home or Office Use"]
    assert parsed.explicit[3]["rationale"] == "The product name specifies the weight as 200g."


def test_coca_cola_figure1_golden():
    parsed = parse_answer(COKE)
    assert parsed.key_phrases == COKE_PHRASES
    assert [a["value"] for a in parsed.explicit] == ["Coca-Cola", "Zero Sugar Beverage", "1.25L"]
    assert parsed.explicit[2]["rationale"] == "The product name specifies the volume as 1.25 liters."
    assert [a["aspect"] for a in parsed.implicit] == ["Calorie Content", "Target Audience", "Consumption Scenarios"]


def test_markdown_numbering_bold_and_chinese_punctuation():
    raw = """**Explicit Information:**
1. **Brand**: Coca-Cola. Named in the title.
2. **Type**：Zero Sugar Beverage。Stated in the title.
- Volume: 1.25L
**Implicit Information:**
* Calorie Content: Low-Calorie
**Key Features:** Coca-Cola，Zero Sugar Beverage、1.25L; Low-Calorie"""
    parsed = parse_answer(raw)
    assert parsed.key_phrases == ["Coca-Cola", "Zero Sugar Beverage", "1.25L", "Low-Calorie"]
    assert parsed.explicit[1] == {"aspect": "Type", "value": "Zero Sugar Beverage", "rationale": "Stated in the title."}
    assert parsed.explicit[2]["rationale"] == ""  # a missing rationale is allowed
    assert parsed.implicit[0]["value"] == "Low-Calorie"


def test_missing_key_features_falls_back_to_aspect_values():
    parsed = parse_answer("Explicit Information:\nType: Mug, Ceramic. x\nImplicit Information:\nUse: Tea Time. y")
    assert parsed.status == "ok" and parsed.key_phrases_from == "aspects"
    assert parsed.key_phrases == ["Mug", "Ceramic", "Tea Time"]


def test_nothing_parseable_is_a_parse_error():
    parsed = parse_answer("I am sorry, I cannot help with that")
    assert parsed.status == "parse_error" and parsed.key_phrases == [] and parsed.error


def test_stops_at_an_invented_second_example():
    raw = "Type: Mug. x\nKey Features: Mug, Gift\n\nProduct Name: Teapot\nExplicit Information:\nType: Teapot. y\nKey Features: Teapot"
    parsed = parse_answer(raw)
    assert parsed.key_phrases == ["Mug", "Gift"]
    assert [a["value"] for a in parsed.explicit] == ["Mug"]


def test_split_phrases_dedupes_and_trims():
    assert split_phrases('"Gift", gift, Tea Light. ; ,LED') == ["Gift", "Tea Light", "LED"]


def test_labels_numbering_and_headings_in_the_list_are_not_phrases():
    # as the 135M model wrote them in the demo run (runs/main/knowledge/*.jsonl)
    listed = "Type: Black Skull, Sizes: Small, 1. 60 Teatime Fairy Cake Cases, Purchase History:, Value: 100%"
    assert split_phrases(listed) == ["Black Skull", "Small", "60 Teatime Fairy Cake Cases", "100%"]
    assert split_phrases("1.25L, 2 Pack, e.g. Gifts") == ["1.25L", "2 Pack", "e.g. Gifts"]  # no list marker there
    assert split_phrases("A Very Long Label Here: Red") == ["A Very Long Label Here: Red"]  # no label of 5 words
    answer = parse_answer("Explicit Information:\nType: Mug. Named.\nKey Features: Type: Mug, Gift Ideas:")
    assert answer.key_phrases == ["Mug"]


def test_format_answer_round_trips():
    parsed = parse_answer(COSTA)
    again = parse_answer(format_answer(parsed.explicit, parsed.implicit, parsed.key_phrases))
    assert again == parsed


def test_run_on_sentences_are_not_key_phrases():
    raw = "Key Features: Cakestand, Professional Grade, 3. The 3. The product name specifically mentions it is a Cakestand"
    assert parse_answer(raw).key_phrases == ["Cakestand", "Professional Grade"]


JSON_ANSWER = (
    '{"explicit": [{"aspect": "Type", "value": "Lunch Bag", "rationale": "The name says so."}, '
    '{"aspect": "Colour", "value": "Red", "rationale": ""}], '
    '"implicit": [{"aspect": "Use", "value": "Packed Lunch", "rationale": "Lunch bags carry lunch."}], '
    '"key_features": ["Lunch Bag", "Red", "Packed Lunch", "lunch bag", "Type: Retro Style"]}'
)


def test_a_structured_answer_parses_into_the_same_fields_as_text():
    from kgen.parse import parse_answer

    parsed = parse_answer(JSON_ANSWER + "\nsome chatter after the object")
    assert parsed.status == "ok" and parsed.key_phrases_from == "key_features"
    assert parsed.key_phrases == ["Lunch Bag", "Red", "Packed Lunch", "Retro Style"]  # deduped, label stripped
    assert [a["value"] for a in parsed.explicit] == ["Lunch Bag", "Red"]
    assert parsed.implicit == [{"aspect": "Use", "value": "Packed Lunch", "rationale": "Lunch bags carry lunch."}]


def test_a_structured_answer_cut_off_is_a_parse_error_and_an_empty_list_falls_back_to_values():
    from kgen.parse import parse_answer

    cut = parse_answer(JSON_ANSWER[:90])
    assert cut.status == "parse_error" and "not complete JSON" in cut.error
    no_features = parse_answer('{"explicit": [{"aspect": "Type", "value": "Mug"}], "implicit": [], "key_features": []}')
    assert no_features.key_phrases == ["Mug"] and no_features.key_phrases_from == "aspects"
    assert parse_answer('{"key_features": "Mug"').status == "parse_error"


def test_the_json_form_of_an_answer_round_trips():
    from kgen.answer_schema import format_json_answer
    from kgen.parse import parse_answer

    parsed = parse_answer(JSON_ANSWER)
    again = parse_answer(format_json_answer(parsed.explicit, parsed.implicit))
    # The canonical form has no rationale and no key-feature list: the key phrases are the values, explicit first.
    assert [a["value"] for a in again.explicit] == [a["value"] for a in parsed.explicit]
    assert again.key_phrases == [a["value"] for a in parsed.explicit + parsed.implicit]
    assert again.key_phrases_from == "aspects" and again.status == "ok"
