"""Issue 9, section 0: `annotate` never alters what the user had, and says what is wrong in one line."""

import hashlib
import json
import sqlite3

import pytest
from typer.testing import CliRunner

from annotate.assign import AssignConfig
from annotate.cli import app
from annotate.phrases import initial_doc
from annotate.prepare import check_roles, parse_account, prepare_store
from annotate.store import Store
from ground.files import write_jsonl
from ground import records as R

RECORD = {R.ID: "A", R.LEVEL: "item", R.INPUT: "red mug", R.KEY_PHRASES: ["Red", "Mug"], R.EXPLICIT: [],
          R.IMPLICIT: [], R.RAW: "raw", R.STATUS: "ok", R.MODEL: "teacher-x"}
EMPTY_RECORD = {**RECORD, R.ID: "T", R.KEY_PHRASES: [], R.STATUS: "truncated"}


def one_line_error(result, message):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def other_sqlite(tmp_path):
    """Another program's SQLite file (rollback journal, one table of its own)."""
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (body TEXT)")
    con.execute("INSERT INTO notes VALUES ('keep me')")
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize("command", [["export", "-o", "gold.jsonl"], ["agreement"], ["serve", "--auth", "a:b"]])
def test_another_programs_database_is_refused_and_left_as_it_was(other_sqlite, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    before = digest(other_sqlite)
    result = CliRunner().invoke(app, [*command, "--db", str(other_sqlite)])
    one_line_error(result, f"{other_sqlite}: not an annotation database")
    assert digest(other_sqlite) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite"]  # no -wal, no -shm, no gold file
    con = sqlite3.connect(other_sqlite)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["notes"]


@pytest.mark.parametrize("content", [b"", b"this is not a database at all, just some text\n" * 20])
def test_export_of_an_empty_or_garbage_file_is_one_line(tmp_path, content):
    db = tmp_path / "g.sqlite"
    db.write_bytes(content)
    result = CliRunner().invoke(app, ["export", "--db", str(db), "-o", str(tmp_path / "gold.jsonl")])
    one_line_error(result, f"{db}: not an annotation database")
    assert db.read_bytes() == content


@pytest.mark.parametrize("command", [["export", "-o", "gold.jsonl"], ["serve", "--auth", "a:b"]])
def test_a_garbage_or_folder_db_is_one_line(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.sqlite").write_text("not sqlite\n" * 100)
    result = CliRunner().invoke(app, [*command, "--db", "garbage.sqlite"])
    one_line_error(result, "garbage.sqlite: not an annotation database")
    result = CliRunner().invoke(app, [*command, "--db", ""])  # an empty --db names the current folder
    one_line_error(result, "is a folder")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gold.sqlite")
    prepare_store(s, [RECORD, EMPTY_RECORD], ["alice"], AssignConfig())
    return s


def test_export_opens_the_database_read_only(store, tmp_path):
    store.save("item:A", "alice", initial_doc(RECORD), 0, "submitted")
    readonly = Store(store.path, readonly=True)
    assert len(readonly.snapshot().annotations["item:A"]) == 1
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        readonly.save("item:A", "alice", initial_doc(RECORD), 1, "draft")
    result = CliRunner().invoke(app, ["export", "--db", str(store.path), "-o", str(tmp_path / "gold.jsonl")])
    assert result.exit_code == 0 and "wrote 1 gold records" in result.output, result.output


def test_export_with_no_gold_keeps_an_existing_gold_file(store, tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "earlier gold"}\n')
    result = CliRunner().invoke(app, ["export", "--db", str(store.path), "-o", str(gold)])
    one_line_error(result, f"{gold}: exists and {store.path} has no gold records yet; not overwritten")
    assert gold.read_text() == '{"id": "earlier gold"}\n'
    result = CliRunner().invoke(app, ["export", "--db", str(store.path), "-o", str(gold), "--force"])
    assert result.exit_code == 0 and gold.read_text() == ""


def test_export_to_a_folder_is_one_line(store, tmp_path):
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(app, ["export", "--db", str(store.path), "-o", str(tmp_path / "out")])
    one_line_error(result, "out: is a folder")


def test_export_reports_empty_gold_apart(store, tmp_path):
    store.save("item:A", "alice", initial_doc(RECORD) | {"rows": []}, 0, "submitted")
    store.save("item:T", "alice", initial_doc(EMPTY_RECORD), 0, "submitted")
    gold = tmp_path / "gold.jsonl"
    result = CliRunner().invoke(app, ["export", "--db", str(store.path), "-o", str(gold)])
    assert result.exit_code == 0, result.output
    assert "note: 2 gold records have no key phrases: item:A, item:T" in result.stderr
    info = json.loads(gold.with_name("gold.run.json").read_text())
    assert info["metrics"]["empty_gold"] == 2 and info["empty_gold_ids"] == ["item:A", "item:T"]


def test_reviewer_given_as_user_password_gets_advice_that_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "k.jsonl", [RECORD])
    args = ["serve", "--db", "g.sqlite", "--input", "k.jsonl", "--auth", "a:pw1", "--reviewer", "rev:pw3"]
    result = CliRunner().invoke(app, args)
    one_line_error(result, "give --auth rev:pw3 --reviewer rev")
    assert check_roles([parse_account("a:pw1"), parse_account("rev:pw3")], ["rev"]) == ["a"]  # the advice works
