"""MovieLens 1M (`::`-separated movies.dat, users.dat, ratings.dat) and 100K (u.item, u.user, u.data) -> RawData.

Every rating is a sample, rating >= click_threshold (4) is a click (the KAR/CTRL protocol). Each file may
be gzipped; text is read as UTF-8, else Latin-1 (the original files are Latin-1). Every line is checked
before anything is used: a bad one stops the run with `path:line: what is wrong`.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ground.errors import ConfigError, RecordError
from ground import records as R
from ctr.prepare_rechorus import CONTEXT_FIELDS
from ctr.raw import Log, PrepareConfig, RawData, check_known, check_unique, stop_at_first

GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western")
AGE_GROUPS = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
OCCUPATIONS_1M = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                  "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                  "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
ZIP_PREFIX = 2  # the first two zip digits: a region; five digits would make a field of mostly single users
USER_FIELDS, ITEM_FIELDS = ["gender", "age", "occupation", "zip"], ["year", "genre"]
TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")
# "Lost Children, The (Cité des enfants perdus, La)" -> "The Lost Children (...)": the name reads naturally.
TRAILING_ARTICLE = re.compile(r"^(?P<main>.+?), (?P<article>The|A|An)(?P<rest>\s\(.*\))?$")


# --- reading and checking text tables -------------------------------------------

def read_lines(path: Path) -> list[str]:
    """The file's lines, gunzipped if it ends in .gz; UTF-8 if it decodes, else Latin-1."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:  # a cut or corrupt download
            raise RecordError(f"{path}: not a complete gzip file ({exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.split("\n")


def read_table(path: Path, sep: str, n_fields: int) -> pd.DataFrame:
    """Columns 0..n_fields-1 (strings) and 'line' (1-based) of every non-blank line; a wrong field count stops."""
    lines = pd.Series(read_lines(path)).str.rstrip("\r")
    lines = lines[lines.str.strip() != ""]
    parts = lines.str.split(sep, regex=False)
    counts = parts.str.len().to_numpy()
    stop_at_first(counts != n_fields, lines.index + 1, path,
                  lambda i: f"expected {n_fields} fields separated by {sep!r}, got {counts[i]}: {lines.iloc[i][:80]!r}")
    table = pd.DataFrame(parts.tolist(), columns=range(n_fields), dtype=object) if len(parts) else \
        pd.DataFrame(columns=range(n_fields), dtype=object)
    table["line"] = lines.index.to_numpy() + 1
    return table


def int_column(table: pd.DataFrame, col: int, path: Path, what: str, lo: int | None = None,
               hi: int | None = None) -> np.ndarray:
    """Column `col` as int64; a non-integer or out-of-range value stops with its path:line."""
    text = table[col].astype(str).str.strip()
    ok = text.str.fullmatch(r"-?\d{1,18}").to_numpy(dtype=bool)
    stop_at_first(~ok, table["line"].to_numpy(), path, lambda i: f"{what} must be an integer, got {text.iloc[i][:40]!r}")
    values = text.astype(np.int64).to_numpy()
    out = (values < lo if lo is not None else False) | (values > hi if hi is not None else False)
    stop_at_first(out, table["line"].to_numpy(), path, lambda i: f"{what} must be in {lo}..{hi}, got {values[i]}")
    return values


# --- files of a folder ----------------------------------------------------------

def find_file(raw: Path, name: str) -> Path:
    """raw/name or raw/name.gz, exactly one of them."""
    found = [p for p in (raw / name, raw / f"{name}.gz") if p.is_file()]
    if len(found) != 1:
        raise ConfigError(f"{raw}: expected one of {name} or {name}.gz, found {len(found)}")
    return found[0]


def find_ratings(raw: Path, pattern: str | None) -> Path:
    """The ratings file: `pattern` (a name or glob) in raw; by default ratings.dat*, else the one ratings*.dat*."""
    if not raw.is_dir():
        raise ConfigError(f"{raw}: not a folder (--raw is the folder holding the dataset files)")
    tries = [pattern] if pattern else ["ratings.dat*", "ratings*.dat*"]
    for glob in tries:
        found = sorted(p for p in raw.glob(glob) if p.is_file())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(f"{raw}: {glob} matches {len(found)} files ({', '.join(p.name for p in found)}); "
                             "name one with --ratings")
    raise ConfigError(f"{raw}: no ratings file matches {' or '.join(tries)}; name it with --ratings")


# --- titles and events -----------------------------------------------------------

def split_title(title: str) -> tuple[str, int | None]:
    """'City of Lost Children, The (1995)' -> ('The City of Lost Children', 1995)."""
    title = title.strip()
    m = TITLE_YEAR.match(title)
    name, year = (m["title"], int(m["year"])) if m else (title, None)
    a = TRAILING_ARTICLE.match(name)
    if a:
        name = f"{a['article']} {a['main']}{a['rest'] or ''}"
    return name, year


def movie_frame(ids: np.ndarray, titles: list[str], genres: list[list[str]], years: list[int | None]) -> pd.DataFrame:
    """Item table: name (title without year), original_name, category (first genre), attributes, fields."""
    names = [split_title(t)[0] for t in titles]
    attributes = [{k: v for k, v in (("year", y), ("genres", g)) if v} for y, g in zip(years, genres)]
    return pd.DataFrame({
        R.NAME: names, R.ORIGINAL_NAME: titles, R.CATEGORY: [g[0] if g else "" for g in genres],
        R.ATTRIBUTES: attributes, "year": ["" if y is None else str(y) for y in years],
        "genre": [g[0] if g else "" for g in genres], "genres": ["|".join(g) for g in genres],
    }, index=pd.Index(ids.astype(str), name=R.ITEM_ID))


def user_frame(ids: np.ndarray, gender: list[str], age: list[str], occupation: list[str],
               zips: list[str]) -> pd.DataFrame:
    """User table: profile (readable values) and the single-valued fields."""
    zips = [z.strip() for z in zips]
    profiles = [{"gender": g, "age": a, "occupation": o, "zip": z} for g, a, o, z in zip(gender, age, occupation, zips)]
    return pd.DataFrame({R.PROFILE: profiles, "gender": gender, "age": age, "occupation": occupation,
                         "zip": [z[:ZIP_PREFIX] for z in zips]}, index=pd.Index(ids.astype(str), name=R.USER_ID))


def rating_events(table: pd.DataFrame, path: Path, users: pd.DataFrame, items: pd.DataFrame,
                  config: PrepareConfig, user_file: str, item_file: str) -> tuple[pd.DataFrame, dict]:
    """Checked ratings (columns user, item, rating, ts) -> events; users above max_user dropped and counted."""
    user = int_column(table, 0, path, "user id", lo=1)
    item = int_column(table, 1, path, "movie id", lo=1)
    rating = int_column(table, 2, path, "rating", lo=1, hi=5)
    ts = int_column(table, 3, path, "timestamp", lo=0)
    lines = table["line"].to_numpy()
    check_known(user.astype(str), users.index, lines, path, "user", user_file)
    check_known(item.astype(str), items.index, lines, path, "movie", item_file)
    # A second rating of the same movie would put the target in its own history.
    again = pd.DataFrame({"u": user, "i": item}).duplicated().to_numpy()
    stop_at_first(again, lines, path, lambda i: f"user {user[i]} rated movie {item[i]} twice")
    keep = user <= config.max_user if config.max_user else np.ones(len(user), dtype=bool)
    events = pd.DataFrame({R.USER_ID: user[keep].astype(str), R.ITEM_ID: item[keep].astype(str),
                           R.LABEL: (rating[keep] >= config.click_threshold).astype(np.int8),
                           R.TS: ts[keep].astype(np.int64)})
    notes = {"ratings_read": len(user), "ratings_kept": int(keep.sum()),
             "users_dropped_above_max_user": int(len(set(user[~keep].tolist())))}
    return events, notes


def movielens_protocol(config: PrepareConfig) -> dict:
    """The click and sample rules shared by both MovieLens formats."""
    out = {"click_rule": f"rating >= {config.click_threshold} is a click (label 1), lower ratings are label 0 "
                         "(KAR/CTRL)",
           "sample_rule": "every rating is one sample" + (f" of users with id <= {config.max_user}"
                                                          if config.max_user else ""),
           "negative_rule": "none sampled: label 0 rows are real ratings below the threshold",
           "genre_rule": "the genre field is the full genre string (Action|Comedy)" if config.full_genres
                         else "the genre field is the first listed genre"}
    if config.protocol == "rechorus":
        out["protocol"] = ("ReChorus 2.0 CTR (data/MovieLens_1M/MovieLens-1M.ipynb): 5-core on clicks, day-span "
                           "split (train day <= 0.8 x last day, val <= 0.9 x), val/test rows only of users and "
                           "items seen in train, context fields hour/weekday/period (UTC) per row (they ride with "
                           "the user fields), every rating in the history, full genre string")
    return out


def _title(base: str, events: pd.DataFrame, config: PrepareConfig) -> str:
    base += ", ReChorus protocol" if config.protocol == "rechorus" else ""
    if not config.max_user:
        return base
    users = events[R.USER_ID].astype(int)
    return f"{base} (users {users.min()}-{users.max()})"


# --- the two formats -------------------------------------------------------------

def read_ids(table: pd.DataFrame, path: Path, what: str) -> np.ndarray:
    """Column 0 as positive, unique integer ids."""
    ids = int_column(table, 0, path, what, lo=1)
    check_unique(ids, table["line"].to_numpy(), path, what)
    return ids


def with_ratings(title: str, items: pd.DataFrame, users: pd.DataFrame, item_path: Path, user_path: Path,
                 ratings_path: Path, sep: str, config: PrepareConfig, log: Log) -> RawData:
    """Read and check the ratings against the items and users; the RawData of either format."""
    log(f"{ratings_path}: reading ratings")
    ratings = read_table(ratings_path, sep, 4)
    events, notes = rating_events(ratings, ratings_path, users, items, config, user_path.name, item_path.name)
    item_fields = ["year", "genres"] if config.full_genres else ITEM_FIELDS
    user_fields = USER_FIELDS + (CONTEXT_FIELDS if config.protocol == "rechorus" else [])  # context: per row
    return RawData(items=items, users=users, events=events, fields={"user": user_fields, "item": item_fields},
                   protocol=movielens_protocol(config), sources=[item_path, user_path, ratings_path],
                   title=_title(title, events, config), notes=notes)


def load_ml1m(config: PrepareConfig, log: Log) -> RawData:
    """movies.dat (id::title::genres), users.dat (id::gender::age::occupation::zip), ratings (user::movie::rating::ts)."""
    ratings_path = find_ratings(config.raw, config.ratings)
    movies_path, users_path = find_file(config.raw, "movies.dat"), find_file(config.raw, "users.dat")
    movies = read_table(movies_path, "::", 3)
    titles = [t.strip() for t in movies[1]]
    genres = [[g for g in s.strip().split("|") if g] for s in movies[2]]
    items = movie_frame(read_ids(movies, movies_path, "movie id"), titles, genres, [split_title(t)[1] for t in titles])
    table = read_table(users_path, "::", 5)
    ages = int_column(table, 2, users_path, "age group")
    occ = int_column(table, 3, users_path, "occupation", lo=0, hi=len(OCCUPATIONS_1M) - 1)
    users = user_frame(read_ids(table, users_path, "user id"), [g.strip() for g in table[1]],
                       [AGE_GROUPS.get(int(a), str(a)) for a in ages], [OCCUPATIONS_1M[o] for o in occ],
                       list(table[4]))
    return with_ratings("ML-1M", items, users, movies_path, users_path, ratings_path, "::", config, log)


def _year_100k(title: str, release: str) -> int | None:
    year = split_title(title)[1]
    tail = release.strip()[-4:]
    return year if year is not None else (int(tail) if tail.isdigit() else None)


def _age_group(age: int) -> str:
    # The 1M age groups, so a model or prompt reads both formats alike.
    lower = max(k for k in AGE_GROUPS if k <= max(age, 1))
    return AGE_GROUPS[lower]


def load_ml100k(config: PrepareConfig, log: Log) -> RawData:
    """u.item (id|title|release|video release|url|19 genre flags), u.user (id|age|gender|occupation|zip), u.data (tab)."""
    item_path, user_path, data_path = (find_file(config.raw, n) for n in ("u.item", "u.user", "u.data"))
    movies = read_table(item_path, "|", 5 + len(GENRES_100K))
    flags = np.stack([int_column(movies, 5 + g, item_path, f"genre flag {name}", lo=0, hi=1)
                      for g, name in enumerate(GENRES_100K)], axis=1)  # (M, 19)
    genres = [[GENRES_100K[g] for g in np.flatnonzero(row) if g] for row in flags]  # 'unknown' is no genre
    titles = [t.strip() for t in movies[1]]
    items = movie_frame(read_ids(movies, item_path, "movie id"), titles, genres,
                        [_year_100k(t, r) for t, r in zip(titles, movies[2])])
    table = read_table(user_path, "|", 5)
    ages = int_column(table, 1, user_path, "age", lo=0, hi=150)
    users = user_frame(read_ids(table, user_path, "user id"), [g.strip() for g in table[2]],
                       [_age_group(int(a)) for a in ages], [o.strip() for o in table[3]], list(table[4]))
    return with_ratings("ML-100K", items, users, item_path, user_path, data_path, "\t", config, log)
