"""The ground below every other package: errors, files, configs and the CLI boundary, the record schema, vector tables.

It imports no other package of the toolkit (tests/test_layering.py checks it)."""
