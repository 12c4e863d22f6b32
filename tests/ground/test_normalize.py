import pytest

from ground.normalize import has_cjk, normalize_phrase, numbers_and_units, numbers_differ, unique_normalized


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1.25 L", "1.25L"),
        ("1.25 litres", "1.25l"),
        ("200 G", "200g"),
        ("ＧＩＦＴ　ＢＯＸ", "gift box"),  # full-width letters and space (NFKC)
        ("Gift Box", "GIFT BOX"),
        ("T-Light_Holder", "t light holder"),
        ("Salt & Pepper", "salt and pepper"),
        ("  Vintage   Style. ", "vintage style"),
        ('"Home Decor!"', "home decor"),
        ("Children's Toy", "childrens toy"),
        ("Coca‐Cola", "coca cola"),  # unicode hyphen
        ("12 x 200 g", "12x200g"),
        ("1,25 l", "1.25l"),  # decimal comma
    ],
)
def test_equivalent_forms_normalise_to_the_same_string(a, b):
    assert normalize_phrase(a) == normalize_phrase(b)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.25 L", "1.25l"),
        ("18 ct", "18ct"),
        ("3 tier", "3 tier"),  # "tier" is not a unit
        ("3 in 1 charger", "3 in 1 charger"),  # "in" between numbers is a word
        ("5 inch", "5in"),
        ("3-5 years", "3-5 years"),  # a range between digits keeps its hyphen
        ("1/2 price", "1/2 price"),
        ("50% off", "50% off"),
        ("Age 3+", "age 3+"),
        ("...", ""),
    ],
)
def test_normal_forms(raw, expected):
    assert normalize_phrase(raw) == expected


def test_different_phrases_stay_different():
    assert normalize_phrase("Red Retrospot") != normalize_phrase("Blue Retrospot")
    assert normalize_phrase("1.25L") != normalize_phrase("1.5L")


def test_normalisation_is_idempotent():
    for raw in ["Coca-Cola Zero Sugar 1.25 Litres", "ＡＢＣ　Tea", "Pack of 6 x 2", "Age 3+", "T_shirt/Top"]:
        once = normalize_phrase(raw)
        assert normalize_phrase(once) == once


def test_numbers_and_units():
    assert numbers_and_units("1.50 L") == numbers_and_units("1.5l") == (("1.5", "l"),)
    assert numbers_and_units("Pack of 12") == numbers_and_units("12 pack") == numbers_and_units("a dozen")
    assert numbers_and_units("Set of Three") == numbers_and_units("set of 3")
    assert numbers_and_units("Gift for Her") == ()
    assert numbers_and_units("12x200g") == (("12", "x"), ("200", "g"))


def test_numbers_differ():
    assert numbers_differ("1.25L", "1.5L")
    assert numbers_differ("Pack of 12", "Pack of 24")
    assert numbers_differ("Coca-Cola 1.25L", "Coca-Cola")  # only one side has a number
    assert not numbers_differ("1.25 L", "1.250l")
    assert not numbers_differ("Gift", "Present")


def test_has_cjk():
    assert has_cjk("可口可乐")
    assert has_cjk("コカ・コーラ")
    assert has_cjk("코카콜라")
    assert has_cjk("Coca-Cola 可乐")
    assert not has_cjk("Café crème")
    assert not has_cjk("Coca-Cola 1.25L")


def test_unique_normalized_keeps_first_order_and_drops_empties():
    assert unique_normalized(["Red", "blue", "RED ", "", "  ", "Blue!", "green"]) == ["red", "blue", "green"]
