"""UCI Online Retail: cleaning, readable product names and categories, shared by `ctr prepare` and
scripts/build_sample.py (one copy, so the sample and the benchmark data are cleaned alike)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd


# Product stock codes are five digits plus an optional letter suffix (85123A, 15056BL); the rest
# (POST, DOT, M, D, C2, S, B, PADS, CRUK, BANK CHARGES, AMAZONFEE, DCGS..., gift_0001_...) are
# postage, fees, manual adjustments, samples, charity lines and gift vouchers.
PRODUCT_CODE = re.compile(r"^\d{5}[A-Z]{0,2}$")
# Service lines that carry a product-like code.
NON_PRODUCT_NAMES = re.compile(r"CARRIAGE$|^PACKING CHARGE|HIGH RESOLUTION IMAGE|POSTAGE|^MANUAL", re.I)

# Ordered rules: the first pattern found in the upper-cased description gives the category.
# Each alternative also matches its plural (S/ES); \w* marks run-together words (CANDLEHOLDER).
CATEGORY_RULES: list[tuple[str, str]] = [
    ("christmas & seasonal", r"CHRISTMAS|XMAS|ADVENT|SANTA|REINDEER|NATIVITY|BAUBLE|YULETIDE|SNOWMAN|SNOWFLAKE|"
                             r"EASTER|HALLOWEEN|ANGEL|STOCKING|SLEIGH|NOEL|TREE DECORATION|ICICLE"),
    ("clocks", r"\w*CLOCK"),
    # Signs, frames and knobs name the design after a room or theme (BATHROOM METAL SIGN): type first.
    ("home decor", r"\w*(?<!DE)SIGN|PLAQUE|PICTURE FRAME|PHOTO FRAME|PHOTOFRAME|PHOTO CLIP|\w*KNOB|VASE|NUMBER TILE|"
                   r"BUILDING BLOCK WORD|BLOCK LETTERS|WOOD LETTERS|DECORATION"),
    ("bathroom & personal care", r"BATHROOM|BALM"),
    ("jewellery & accessories", r"CARD WALLET|\w*PASSPORT|KEY FOB|KEY ?RING|KEYRING|PURSE|UMBRELLA"),
    ("kitchen & dining", r"CAKE TIN|HERB TIN|SPICE TIN|SHOPPING LIST|CAKESTAND|CAKE STAND|PLACE SETTING|CHOPPING BOARD"),
    ("candles & lights", r"\w*CANDLE\w*|T-LIGHT|T LIGHT|TEALIGHT|TEA LIGHT|LANTERN|LIGHT|LAMP|LED|CHANDELIER|"
                         r"INCENSE|OIL BURNER|NIGHTLIGHT|MATCHES|LAMPSHADE"),
    ("party & celebration", r"PARTY|BUNTING|BALLOON|NAPKIN|PAPER PLATE|PAPER CUP|CAKE CASE|CUPCAKE CASE|"
                            r"CAKE TOPPER|STRAW|CONFETTI|BANNER|PINATA|DOILIES|CRACKER|DISCO BALL|HONEYCOMB|"
                            r"PENNANT|SANDCASTLE FLAG|COCKTAIL|GRASS SKIRT|ROSETTE|PETIT FOUR CASE"),
    ("toys, games & kids", r"TOY|GAME|JIGSAW|PUZZLE|DOLL|SKIPPING ROPE|MARBLE|DOMINO|PLAYING CARD|"
                           r"SPINNING TOP|TEDDY|SOLDIER|COLOURING|CRAYON|PAINT SET|ALPHABET BLOCK|BINGO|"
                           r"SNAKES|LADDERS|KALEIDOSCOPE|YO-YO|HELICOPTER|FELTCRAFT|PUPPET|RATTLE|BOOMERANG|"
                           r"BUBBLE|CHALK STICK|PARLOUR|MONEY BOX|PIGGY BANK|LUDO|NAUGHTS|NOUGHTS|DRAWING SLATE|"
                           r"MODELLING|PLAYHOUSE|ROCKING HORSE|GLIDER|CREEPY CRAWLIES|TATTOO|CANVAS SET|"
                           r"SPORTING FUN|INFLATABLE|BABY|CHILDS|CHILDRENS|CHILDREN|KIDS|TOAST ITS|MAGIC SHEEP|FELT FARM ANIMAL|"
                           r"FLYING DISC|COOKING SET|DINOSAUR SET|SNAKE SET|HARMONICA|SNAP CARD|CHALK"),
    ("tools & craft", r"SEWING|NEEDLE|KNITTING|SCISSOR|SCREWDRIVER|SPIRIT LEVEL|REPAIR KIT|TWINE|TAPE MEASURE|"
                      r"TOOL|CRAFT|STENCIL|BUTTON|THREAD|TORCH|PATCH"),
    ("stationery & gift wrap", r"CARD|WRAP|GIFT TAG|RIBBON|ENVELOPE|NOTEBOOK|NOTE BOOK|EXERCISE BOOK|PENCIL|PEN|"
                               r"ERASER|RUBBER|STICKER|JOURNAL|DIARY|CALENDAR|NOTELET|NOTEPAD|SKETCHBOOK|\w*MEMO\w*|"
                               r"BOOKMARK|POCKET BOOK|TISSUE PAPER|GIFT BAG|STATIONERY|RULER|SHARPENER|ADDRESS BOOK|"
                               r"SCRAP ?BOOK|PAPER CHAIN|POSTCARD|WRITING SET|TAPE|STAMP|CHALKBOARD|"
                               r"BLACK ?BOARD|PHOTO ALBUM|ALBUM|PAPERWEIGHT|CALCULATOR"),
    ("bathroom & personal care", r"BATH|BATHROOM|SOAP|TOILET|WASHBAG|WASH BAG|SPONGE|PLASTER|LIP GLOSS|"
                                 r"TOOTHBRUSH|SHOWER|TISSUE|FIRST AID|BALM|MANICURE|NAIL|COSMETIC|MAKE UP|"
                                 r"HAND CREAM|(?<!TEA )TOWEL|FLANNEL|BASIN"),
    ("bags", r"BAG|SHOPPER|TOTE|HANDBAG|BACKPACK|RUCKSACK|SATCHEL"),
    ("home textiles", r"HOT WATER BOTTLE|HOTTIE|HAND WARMER|\w*CUSHION|THROW|BLANKET|QUILT|DOORMAT|DOOR MAT|"
                      r"TEA COSY|FILLER PAD|EIDERDOWN|RUG|CURTAIN|PATCHWORK|MAT|IRONING BOARD COVER"),
    ("garden & outdoor", r"GARDEN|BIRD ?FEEDER|BIRD ?HOUSE|BIRDHOUSE|BIRD TABLE|PLANT|PLANTER|FLOWER POT|"
                         r"PLANT POT|WATERING CAN|SEED|TROWEL|PICNIC|DOVECOTE|HERB MARKER|HERB GARDEN|PARASOL|WINDMILL|"
                         r"GNOME|SPADE|GARDENER|PEG|WASHING LINE|SAND|BEACH|BUCKET|HAMMOCK|FLY SWAT|KNEELING PAD|GROW|WINDSOCK"),
    ("kitchen & dining", r"CAKESTAND|CAKE STAND|CAKE TIN|HERB TIN|BAKING|MOULD|CUTTER|APRON|OVEN GLOVE|OVEN MITT|TEA TOWEL|"
                         r"MUG|TEACUP|CUP|SAUCER|TEAPOT|TEA SET|TEA TIME|COFFEE|SUGAR|PLATE|BOWL|JUG|SPOON|"
                         r"CUTLERY|KITCHEN|JAM|RECIPE|LUNCH BOX|LUNCHBOX|CHOPPING|SCALES|EGG|BEAKER|TUMBLER|"
                         r"GLASS|PANTRY|TRAY|COASTER|PLACEMAT|PLACE MAT|BREAD|BISCUIT|CAKE|DRINK|MILK|BOTTLE|"
                         r"CHOPSTICK|FORK|KNIFE|KNIVES|SIEVE|COLANDER|PAN|PIE|DISH|TEA|SNACK|SWEETS|POPCORN|"
                         r"LOLLY|ICE CREAM|WINE|CHAMPAGNE|GRINDER|FOOD|CONDIMENT|SALT|PEPPER|LARDER|SPICE|"
                         r"HONEY|BUTTER|CUPCAKE|TABLECLOTH|TOASTRACK|BREAKFAST|SQUEEZER|PLATTER|WASHING UP|TEASPOON"),
    ("jewellery & accessories", r"NECKLACE|NECKL|BRACELET|EARRING|BANGLE|BROOCH|CHARM|HAIR\w*|SLIDE|PURSE|WALLET|"
                                r"\w*PASSPORT|KEY ?RING|KEYRING|KEY FOB|UMBRELLA|GLOVE|SUNGLASSES|DIAMANTE|"
                                r"JEWELLERY|COMPACT MIRROR|RING|HAT|TIARA|CLIP|LUGGAGE TAG|BEAD|PENDANT|BADGE|"
                                r"SOMBRERO|PONCHO|RAIN MAC|SLIPPER|FAN|HEADPHONES"),
    ("storage & organisation", r"BOX|BASKET|TIN|TRUNK|DRAWER|JAR|CRATE|CONTAINER|STORAGE|HAMPER|CADDY|CHEST|"
                               r"CABINET|ORGANISER|TIDY|RACK|SHELF|CASE|BIN|HOLDER|POCKET|TRINKET"),
    ("home decor", r"\w*(?<!DE)SIGN|HEART|FRAME|PHOTO|DOORSTOP|DOOR STOP|WALL|ORNAMENT|HANGING|VASE|WREATH|MIRROR|"
                   r"GARLAND|HANGER|HOOK|PLAQUE|\w*KNOB|WICKER|DECORATION|CHIME|FLOWER|BIRD|FEATHER|BELL|DOOR|"
                   r"BUNNY|BUNNIES|CHICK|DECORATIVE|STAR|TILE|ART|SCULPTURE|FIGURE|STATUE|PEARL|HOME|MAGNET|"
                   r"LETTERS|BLOCK WORD|WOODEN WORD|MOBILE|FLYING DUCK|TOADSTOOL|MUSHROOM|PHOTOFRAME|CHAIR|"
                   r"STOOL|TABLE|POUFFE|LOVE SEAT|DESK|THERMOMETER"),
]
OTHER = "other"
_RULES = [(cat, re.compile(rf"\b(?:{pattern})(?:S|ES)?\b")) for cat, pattern in CATEGORY_RULES]

# Title-casing: words kept lower-case mid-name, tokens kept upper-case, units after a number.
JOINERS = "-/+()\""
SMALL_WORDS = {"of", "and", "in", "with", "for", "the", "a", "an", "to", "on", "or", "at", "by", "from"}
KEEP_UPPER = {"LED", "UK", "US", "USA", "VIP", "DIY", "3D", "OK", "DVD", "CD", "PVC", "XL", "NYC", "TV", "A4", "A5", "A6"}
UNIT = re.compile(r"^(\d+(?:\.\d+)?)(CM|MM|M|G|KG|ML|L|CL|PC|PCS)$", re.I)


def load_purchases(path: Path) -> pd.DataFrame:
    """Purchase lines only: no cancellations, returns, anonymous rows, free lines or non-product codes."""
    df = pd.read_parquet(path)
    df["StockCode"] = df["StockCode"].astype(str).str.strip().str.upper()  # 85123a and 85123A are one product
    keep = (
        ~df["InvoiceNo"].astype(str).str.startswith("C")
        & (df["Quantity"] > 0)
        & df["CustomerID"].notna()
        & (df["UnitPrice"] > 0)
        & df["StockCode"].str.match(PRODUCT_CODE)
        & df["Description"].notna()
        & ~df["Description"].fillna("").str.contains(NON_PRODUCT_NAMES)
    )
    df = df[keep].copy()
    df["user_id"] = "u" + df["CustomerID"].astype(int).astype(str)
    df["ts"] = (df["InvoiceDate"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    df["month"] = df["InvoiceDate"].dt.strftime("%Y-%m")
    df["line"] = np.arange(len(df))
    return df


def canonical_descriptions(df: pd.DataFrame) -> pd.Series:
    """StockCode -> its most frequent raw Description (ties: the alphabetically first)."""
    counts = df.groupby(["StockCode", "Description"]).size().reset_index(name="k")
    counts = counts.sort_values(["StockCode", "k", "Description"], ascending=[True, False, True])
    return counts.drop_duplicates("StockCode").set_index("StockCode")["Description"]


def _case_part(part: str) -> str:
    if part.upper() in KEEP_UPPER:
        return part.upper()
    if UNIT.match(part) or re.match(r"^\d", part):
        return part.lower()  # 500G -> 500g, 50'S -> 50's, 45X45CM -> 45x45cm
    return re.sub(r"[A-Za-z]", lambda m: m.group(0).upper(), part.lower(), count=1)


def _case_word(word: str, first: bool) -> str:
    if not first and word.lower() in SMALL_WORDS:
        return word.lower()
    # Joined words are cased per part: T-LIGHT -> T-Light, SET/5 -> Set/5, CASH+CARRY -> Cash+Carry.
    return "".join(_case_part(p) if p and p not in JOINERS else p for p in re.split(f"([{re.escape(JOINERS)}])", word))


def clean_name(raw: str) -> str:
    """A readable product name from an ALL CAPS description, keeping numbers, sizes and abbreviations."""
    text = re.sub(r",(?=\S)", ", ", raw.strip())  # TEA,COFFEE,SUGAR -> TEA, COFFEE, SUGAR
    text = re.sub(r"\s+", " ", text).strip(" .,")
    words = text.split(" ")
    return " ".join(_case_word(w, i == 0) for i, w in enumerate(words))


def categorize(description: str) -> str:
    """The first category whose keywords occur in the description, else "other"."""
    text = re.sub(r"\s+", " ", description.upper())
    for category, pattern in _RULES:
        if pattern.search(text):
            return category
    return OTHER


def build_catalog(df: pd.DataFrame) -> pd.DataFrame:
    """One row per product: raw and clean name, category, median price, basket count and sale window."""
    raw = canonical_descriptions(df)
    g = df.groupby("StockCode")
    cat = pd.DataFrame({
        "original_name": raw,
        "unit_price": g["UnitPrice"].median().round(2),
        "clicks": g["InvoiceNo"].nunique(),
        "first_ts": g["ts"].min(),
        "last_ts": g["ts"].max(),
    })
    cat["name"] = cat["original_name"].map(clean_name)
    cat["category"] = cat["original_name"].map(categorize)
    return cat


def month_popularity(df: pd.DataFrame, items: list[str]) -> dict[str, pd.Series]:
    """Month ("YYYY-MM") -> baskets holding each of `items` that month (item id -> count)."""
    sold = df[df["StockCode"].isin(set(items))].drop_duplicates(["InvoiceNo", "StockCode"])
    return {m: g.groupby("StockCode").size() for m, g in sold.groupby("month")}



# Fixed price bands (GBP, the median unit price): the same edges on every subset, so a band means one thing.
PRICE_BANDS = ((1.0, "under 1"), (2.0, "1-2"), (5.0, "2-5"), (10.0, "5-10"))


def price_band(prices: list[float | None]) -> list[str]:
    """Each unit price's band label ('under 1', '1-2', '2-5', '5-10', '10+'); a missing price gives ''."""
    def band(p: float | None) -> str:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or p != p:
            return ""
        return next((label for edge, label in PRICE_BANDS if p < edge), "10+")
    return [band(p) for p in prices]
