"""Reads archived Parquet files with pyarrow, independently of the archiver's own code.

usage: read_parquet.py FILE... prints {"schema": {column: type}, "rows": [...]} as JSON, with
timestamps as integer microseconds since the epoch (UTC) and fixed-size binary values (the
leaf hashes) as lowercase hex, so nothing is lost in printing.
"""

import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main(paths):
    schema = None
    rows = []
    for path in paths:
        table = pq.read_table(path)
        if schema is None:
            schema = {field.name: str(field.type) for field in table.schema}
        columns = {}
        for field in table.schema:
            column = table.column(field.name)
            if pa.types.is_timestamp(field.type):
                column = column.cast(pa.int64())
            values = column.to_pylist()
            if pa.types.is_fixed_size_binary(field.type):
                values = [None if v is None else v.hex() for v in values]
            columns[field.name] = values
        for i in range(table.num_rows):
            rows.append({name: values[i] for name, values in columns.items()})
    json.dump({"schema": schema, "rows": rows}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1:])
