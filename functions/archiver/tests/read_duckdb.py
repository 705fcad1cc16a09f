"""Reads a downloaded archive with DuckDB, as Athena or an analyst would: every Parquet file
under DIR with Hive partitioning (year=YYYY/month=MM), independently of the archiver's code.

usage: read_duckdb.py DIR prints {"months": [[year, month, rows, min_us, max_us]], "types": {...}}
"""

import json
import sys

import duckdb


def main(directory):
    con = duckdb.connect()
    source = f"read_parquet('{directory}/**/*.parquet', hive_partitioning = true)"
    months = con.execute(
        f"""SELECT year::INTEGER, month::INTEGER, count(*),
                   epoch_us(min(occurred_at)), epoch_us(max(occurred_at))
            FROM {source} GROUP BY ALL ORDER BY 1, 2"""
    ).fetchall()
    types = {
        name: kind
        for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    }
    # JSON text columns must parse as JSON in DuckDB too.
    bad_json = con.execute(
        f"SELECT count(*) FROM {source} WHERE NOT json_valid(changes) OR NOT json_valid(metadata)"
    ).fetchone()[0]
    json.dump({"months": months, "types": types, "bad_json": bad_json}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
