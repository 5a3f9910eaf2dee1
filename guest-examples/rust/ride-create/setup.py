"""Creates the ride example's tables (schema.sql) in a database, or shows them.

    python3 setup.py DATABASE_URL          create the tables if missing
    python3 setup.py DATABASE_URL --show   print the rides and audit records

DATABASE_URL is a SQLite file path (or sqlite://path), or a postgres:// URL
(through psql; its `app_schema` parameter, if any, names the schema).
"""

import pathlib
import sqlite3
import subprocess
import sys
import urllib.parse

SHOW = [
    "SELECT id, user_email, amount_cents, charge_id FROM rides ORDER BY id",
    "SELECT ride_id, action, detail FROM audit_records ORDER BY ride_id, action",
]


def postgres(url: str, sql: str) -> str:
    base, _, query = url.partition("?")
    params = urllib.parse.parse_qs(query)
    schema = params.get("app_schema", ["public"])[0]
    script = f'SET search_path TO "{schema}";\n{sql}'
    out = subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", base],
        input=script, text=True, capture_output=True, check=True,
    )
    return out.stdout


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    url, show = sys.argv[1], "--show" in sys.argv[2:]
    schema = (pathlib.Path(__file__).parent / "schema.sql").read_text()
    if url.startswith(("postgres://", "postgresql://")):
        print(postgres(url, ";\n".join(SHOW) + ";" if show else schema), end="")
        return
    with sqlite3.connect(url.removeprefix("sqlite://")) as db:
        if not show:
            db.executescript(schema)
            return
        for query in SHOW:
            for row in db.execute(query):
                print(" | ".join(str(v) for v in row))


if __name__ == "__main__":
    main()
