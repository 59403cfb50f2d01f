"""The compatibility matrix's helpers (used by noxfile.py): PostgreSQL clusters of a chosen major,
and the results file the README's "Supported versions" table is generated from."""
