"""Record files kept gzipped (issue 24: finished knowledge records under bench/) read like plain ones."""

import gzip

import pytest

from ground.errors import RecordError
from ground.records import read_numbered_records

ROW = '{"item_id": "a", "name": "REGENCY CAKESTAND 3 TIER"}\n'


def test_a_gzipped_jsonl_file_reads_with_its_line_numbers(tmp_path):
    path = tmp_path / "items.jsonl.gz"
    path.write_bytes(gzip.compress((ROW + "\n" + ROW.replace('"a"', '"b"')).encode()))
    assert [(n, r["item_id"]) for n, r in read_numbered_records(path, "item")] == [(1, "a"), (3, "b")]
    path.write_bytes(gzip.compress((ROW + '{"item_id": "b"}\n').encode()))
    with pytest.raises(RecordError, match=r"items\.jsonl\.gz:2: missing field 'name'"):
        read_numbered_records(path, "item")


@pytest.mark.parametrize("content", [ROW.encode(), gzip.compress(ROW.encode() * 50)[:40]], ids=["plain", "cut"])
def test_a_gz_name_on_bytes_that_are_not_a_whole_gzip_file_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "items.jsonl.gz"
    path.write_bytes(content)
    with pytest.raises(RecordError, match=r"items\.jsonl\.gz: not a whole gzip file"):
        read_numbered_records(path, "item")
