"""Rebuild the shipped sample (data/sample/) from the UCI Online Retail data; deterministic for a seed.

    python scripts/build_sample.py            # defaults reproduce the committed files

Writes items.jsonl, users.jsonl, interactions.jsonl and build.json (counts, rules, sizes);
data/sample/README.md explains every choice made here.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kgen import records as R  # noqa: E402
from kgen.sample import allocate  # noqa: E402

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
MIN_HISTORY, MAX_HISTORY = 3, 50  # a user needs 3 sampled items; longer histories keep the last 50
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


def select_items(catalog: pd.DataFrame, n_items: int, min_baskets: int, rng: np.random.Generator) -> list[str]:
    """Cover every category: sqrt allocation, then in each category half the best sellers and half random tail."""
    eligible = catalog[catalog["clicks"] >= min_baskets]
    sizes = eligible.groupby("category").size().to_dict()
    quota = allocate(sizes, n_items, "sqrt")
    chosen: list[str] = []
    for category in sorted(quota):
        ranked = eligible[eligible["category"] == category].sort_values(["clicks"], ascending=False, kind="stable")
        head = ranked.index[: math.ceil(quota[category] / 2)].tolist()
        tail = ranked.index[len(head):].tolist()
        chosen += head + sorted(rng.choice(tail, size=quota[category] - len(head), replace=False).tolist())
    return sorted(chosen)


def exposures(df: pd.DataFrame, catalog: pd.DataFrame, items: list[str]) -> dict[str, int]:
    """Baskets in the item's sale window holding any item of its category (a proxy: no impressions exist)."""
    lines = df.assign(category=df["StockCode"].map(catalog["category"]))
    baskets = lines.drop_duplicates(["InvoiceNo", "category"])[["category", "ts"]]
    out = {}
    for category, group in baskets.groupby("category"):
        ts = np.sort(group["ts"].to_numpy())  # one entry per basket that shopped this category
        for item in (i for i in items if catalog.at[i, "category"] == category):
            lo, hi = catalog.at[item, "first_ts"], catalog.at[item, "last_ts"]
            out[item] = int(np.searchsorted(ts, hi, side="right") - np.searchsorted(ts, lo, side="left"))
    return out


def item_records(df: pd.DataFrame, catalog: pd.DataFrame, items: list[str]) -> list[dict]:
    """Item records in the schema of kgen.records."""
    shown = exposures(df, catalog, items)
    return [{
        R.ITEM_ID: item,
        R.NAME: catalog.at[item, "name"],
        R.ORIGINAL_NAME: catalog.at[item, "original_name"],
        R.CATEGORY: catalog.at[item, "category"],
        R.ATTRIBUTES: {"unit_price": float(catalog.at[item, "unit_price"])},
        R.STATS: {R.EXPOSURES: shown[item], R.CLICKS: int(catalog.at[item, "clicks"])},
    } for item in items]


def first_purchases(df: pd.DataFrame, items: list[str]) -> pd.DataFrame:
    """Each (user, sampled item) once, at its first purchase, in time order."""
    bought = df[df["StockCode"].isin(set(items))].sort_values(["ts", "InvoiceNo", "line"])
    return bought.drop_duplicates(["user_id", "StockCode"])


def user_records(df: pd.DataFrame, items: list[str], n_users: int, min_hist: int, max_hist: int,
                 rng: np.random.Generator) -> list[dict]:
    """Users with at least min_hist sampled items, drawn uniformly; history = the last max_hist first purchases."""
    firsts = first_purchases(df, items)
    histories = firsts.groupby("user_id", sort=True)["StockCode"].apply(list)
    eligible = histories[histories.map(len) >= min_hist]
    picked = sorted(rng.choice(eligible.index.to_numpy(), size=min(n_users, len(eligible)), replace=False).tolist())
    countries = df.groupby(["user_id", "Country"]).size().reset_index(name="k")
    countries = countries.sort_values(["user_id", "k", "Country"], ascending=[True, False, True])
    country = countries.drop_duplicates("user_id").set_index("user_id")["Country"]
    return [{R.USER_ID: u, R.HISTORY: eligible[u][-max_hist:], R.PROFILE: {"country": country[u]}} for u in picked]


def _month_popularity(df: pd.DataFrame, items: list[str]) -> dict[str, pd.Series]:
    sold = df[df["StockCode"].isin(set(items))].drop_duplicates(["InvoiceNo", "StockCode"])
    return {m: g.groupby("StockCode").size() for m, g in sold.groupby("month")}


def interaction_records(df: pd.DataFrame, items: list[str], users: list[str], negatives: int,
                        rng: np.random.Generator) -> list[dict]:
    """Positives: each basket line of a sampled item; negatives: month-popularity-weighted items the user never bought."""
    ever = df.groupby("user_id")["StockCode"].agg(set)
    popularity = _month_popularity(df, items)
    pos = df[df["user_id"].isin(set(users)) & df["StockCode"].isin(set(items))]
    pos = pos.drop_duplicates(["InvoiceNo", "StockCode"]).sort_values(["user_id", "ts", "InvoiceNo", "StockCode"])
    rows = []
    for (user, _invoice), basket in pos.groupby(["user_id", "InvoiceNo"], sort=False):
        ts, month = int(basket["ts"].iloc[0]), basket["month"].iloc[0]
        rows += [{R.USER_ID: user, R.ITEM_ID: i, R.LABEL: 1, R.TS: ts} for i in basket["StockCode"]]
        pool = popularity[month].drop(list(ever[user] & set(popularity[month].index)))
        k = min(negatives * len(basket), len(pool))
        drawn = rng.choice(pool.index.to_numpy(), size=k, replace=False, p=(pool / pool.sum()).to_numpy())
        rows += [{R.USER_ID: user, R.ITEM_ID: i, R.LABEL: 0, R.TS: ts} for i in sorted(drawn)]
    return rows


def category_counts(rows: list[dict]) -> dict[str, int]:
    """How many rows fall in each category, largest first."""
    return dict(Counter(r[R.CATEGORY] for r in rows).most_common())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parquet", type=Path, default=ROOT.parent / "shared/data/online-retail/online_retail.parquet")
    p.add_argument("--out", type=Path, default=ROOT / "data/sample")
    p.add_argument("--n-items", type=int, default=300)
    p.add_argument("--n-users", type=int, default=300)
    p.add_argument("--negatives", type=int, default=2, help="negatives per positive")
    p.add_argument("--min-baskets", type=int, default=10, help="an item must be in this many baskets to be picked")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.parquet.exists():
        sys.exit(f"error: {args.parquet}: no such file (see ../shared/data/README.md)")
    rng = np.random.default_rng(args.seed)
    df = load_purchases(args.parquet)
    catalog = build_catalog(df)
    items = select_items(catalog, args.n_items, args.min_baskets, rng)
    item_rows = item_records(df, catalog, items)
    user_rows = user_records(df, items, args.n_users, MIN_HISTORY, MAX_HISTORY, rng)
    inter_rows = interaction_records(df, items, [u[R.USER_ID] for u in user_rows], args.negatives, rng)
    files = {"items.jsonl": item_rows, "users.jsonl": user_rows, "interactions.jsonl": inter_rows}
    for name, rows in files.items():
        R.write_jsonl(args.out / name, rows)
    summary = {
        "command": " ".join(["python scripts/build_sample.py", *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("parquet", "out")},
        "clean_purchase_lines": len(df), "clean_users": int(df["user_id"].nunique()),
        "clean_items": len(catalog), "clean_baskets": int(df["InvoiceNo"].nunique()),
        "catalog_categories": category_counts(catalog.reset_index().to_dict("records")),
        "eligible_categories": category_counts(catalog[catalog["clicks"] >= args.min_baskets].to_dict("records")),
        "sample_categories": category_counts(item_rows),
        "files": {name: {"rows": len(rows), "bytes": (args.out / name).stat().st_size} for name, rows in files.items()},
        "positives": sum(r[R.LABEL] for r in inter_rows),
    }
    R.write_json(args.out / "build.json", summary)
    print(summary)


if __name__ == "__main__":
    main()
