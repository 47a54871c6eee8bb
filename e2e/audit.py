"""Read the bridge's audit database (SQLite file or PostgreSQL) while the bridge writes it."""

import json
import sqlite3
import subprocess
import time

# Recording is asynchronous (queue → batcher → sink); rows appear shortly after the response.
WAIT = 30.0


class AuditDb:
    """Queries use `?` placeholders; the PostgreSQL subclass inlines them as literals."""

    def __init__(self, path):
        self.path = path

    def query(self, sql, params=()):
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute(sql, params)]
        finally:
            conn.close()

    def wait_for(self, sql, params=(), count=1, what="rows"):
        """Polls until the query returns at least `count` rows; fails with the last result."""
        deadline = time.monotonic() + WAIT
        rows = []
        while True:
            try:
                rows = self.query(sql, params)
            except (sqlite3.OperationalError, QueryError) as err:
                # The table may not exist yet (migrations run at start-up) or be locked.
                rows, last_error = [], err
            else:
                last_error = None
            if len(rows) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(rows) >= count, f"expected {count} {what}, found {len(rows)} ({last_error}): {rows}"
        return rows

    def interceptions_for_prompt(self, marker):
        """Interceptions whose recorded user prompt contains `marker` (a unique token per test)."""
        prompts = self.wait_for(
            "SELECT * FROM aibridge_user_prompts WHERE prompt LIKE ?",
            (f"%{marker}%",),
            what=f"user prompts containing {marker!r}",
        )
        return prompts

    def interception(self, interception_id, ended=True):
        sql = "SELECT * FROM aibridge_interceptions WHERE id = ?"
        if ended:
            sql += " AND ended_at IS NOT NULL"
        return self.wait_for(sql, (interception_id,), what=f"interception {interception_id}")[0]

    def interceptions_for_session(self, session_id, count):
        return self.wait_for(
            "SELECT * FROM aibridge_interceptions WHERE client_session_id = ? AND ended_at IS NOT NULL "
            "ORDER BY started_at",
            (session_id,),
            count=count,
            what=f"ended interceptions of session {session_id}",
        )

    def token_usages(self, interception_id):
        return self.wait_for(
            "SELECT * FROM aibridge_token_usages WHERE interception_id = ?",
            (interception_id,),
            what=f"token usages of {interception_id}",
        )

    def tool_usages(self, interception_id):
        return self.wait_for(
            "SELECT * FROM aibridge_tool_usages WHERE interception_id = ?",
            (interception_id,),
            what=f"tool usages of {interception_id}",
        )


def as_json(value):
    """JSON columns come back as text (or bytes) from SQLite, already decoded from PostgreSQL
    (where a JSON string value is then a plain str that need not parse again)."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


class QueryError(Exception):
    pass


# The audit tables' json/jsonb columns.
JSON_COLUMNS = {"input", "metadata", "ended_metadata"}


class PgAuditDb(AuditDb):
    """The same queries through `psql` (no Python driver needed); rows come back as JSON."""

    def __init__(self, url):
        super().__init__(url)
        self.url = url

    def query(self, sql, params=()):
        for value in params:
            literal = "'" + str(value).replace("'", "''") + "'"
            sql = sql.replace("?", literal, 1)
        proc = subprocess.run(
            ["psql", self.url, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c",
             f"SELECT coalesce(json_agg(t), '[]') FROM ({sql}) t"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise QueryError(proc.stderr.strip())
        rows = json.loads(proc.stdout)
        # SQLite hands JSON columns back as text; do the same so `as_json` reads both alike.
        for row in rows:
            for column in JSON_COLUMNS & row.keys():
                if row[column] is not None:
                    row[column] = json.dumps(row[column])
        return rows
