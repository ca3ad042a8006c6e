"""The store's SQL, written once for SQLite, as PostgreSQL takes it.

The store's queries are nearly the common subset of both already; what differs is translated here, never by
hand at each call site:

- parameters: ``?`` becomes ``%s`` (psycopg's placeholder), so a literal ``%`` (``start_us % 3600000000``) is
  doubled to ``%%``;
- SQLite's scalar ``MAX(a, b)`` / ``MIN(a, b)`` (two or more arguments) become ``GREATEST`` / ``LEAST`` (the
  aggregates ``MAX(x)`` / ``MIN(x)`` stay);
- the schema (``schema.sql``, the one description of the index): ``INTEGER`` is 64-bit in SQLite, so ``BIGINT``;
  ``REAL`` is 8 bytes, so ``DOUBLE PRECISION``; ``BLOB`` is ``BYTEA``; an ``INTEGER PRIMARY KEY`` (SQLite's
  rowid alias) is an identity column; ``WITHOUT ROWID`` and ``PRAGMA`` go; an index on an expression gets the
  parentheses PostgreSQL requires.

String literals, quoted names and comments are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCALAR = {"MAX": "GREATEST", "MIN": "LEAST"}


def _pieces(sql: str) -> Iterator[tuple[str, str]]:
    """(kind, text) pieces in order: 'quoted' (a '...' literal or "..." name), 'comment', or 'code'."""
    i, n, start = 0, len(sql), 0
    while i < n:
        c = sql[i]
        if c in "'\"":
            if start < i:
                yield "code", sql[start:i]
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:  # a doubled quote inside the literal
                        end += 2
                        continue
                    break
                end += 1
            yield "quoted", sql[i:end + 1]
            i = start = end + 1
        elif sql.startswith("--", i):
            if start < i:
                yield "code", sql[start:i]
            end = sql.find("\n", i)
            end = n if end < 0 else end
            yield "comment", sql[i:end]
            i = start = end
        else:
            i += 1
    if start < n:
        yield "code", sql[start:]


def _top_level_comma(code: str, open_at: int) -> tuple[int, bool]:
    """Index of the ``)`` matching the ``(`` at ``open_at`` and whether a comma sits directly inside them."""
    depth, comma = 0, False
    for i in range(open_at, len(code)):
        ch = code[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i, comma
        elif ch == "," and depth == 1:
            comma = True
    return len(code), comma


def _scalar_extrema(code: str) -> str:
    """``MAX(a, b)`` -> ``GREATEST(a, b)``; ``MAX(a)`` stays (the aggregate)."""
    out, i = [], 0
    for m in _WORD.finditer(code):
        name = m.group().upper()
        if name not in _SCALAR or m.start() < i:
            continue
        j = m.end()
        while j < len(code) and code[j].isspace():
            j += 1
        if j < len(code) and code[j] == "(" and _top_level_comma(code, j)[1]:
            out.append(code[i:m.start()])
            out.append(_SCALAR[name])
            i = m.end()
    out.append(code[i:])
    return "".join(out)


def _map_code(sql: str, change: Callable[[str], str], *, keep_comments: bool = True) -> str:
    """``sql`` with ``change`` applied to its code only, never to quoted text (or comments)."""
    return "".join(change(text) if kind == "code" else text for kind, text in _pieces(sql)
                   if keep_comments or kind != "comment")


@lru_cache(maxsize=1024)
def to_postgres(sql: str) -> str:
    """A query or statement of the store's, as psycopg sends it to PostgreSQL (placeholders ``%s``).

    Comments are dropped (a ``?`` in one is no parameter); a ``%`` anywhere is doubled, as psycopg wants.
    """
    translated = _map_code(sql, lambda code: _scalar_extrema(code).replace("%", "%%").replace("?", "%s"),
                           keep_comments=False)
    # Quoted text went through untouched: double its '%' too (psycopg reads the whole string).
    return "".join(text.replace("%", "%%") if kind == "quoted" else text for kind, text in _pieces(translated))


# ---- the schema ----

_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA", "TEXT": "TEXT"}
_ROWID_ALIAS = re.compile(r"\b(\w+)\s+INTEGER\s+PRIMARY\s+KEY\b", re.IGNORECASE)
_INDEX_ON = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+IF\s+NOT\s+EXISTS\s+\w+\s+ON\s+\w+\s*\(", re.IGNORECASE)


def statements(script: str) -> list[str]:
    """The statements of an SQL script, comments dropped, split at semicolons outside quotes."""
    out, current = [], []
    for kind, text in _pieces(script):
        if kind == "comment":
            continue
        if kind == "quoted":
            current.append(text)
            continue
        parts = text.split(";")
        for k, part in enumerate(parts):
            current.append(part)
            if k < len(parts) - 1:
                out.append("".join(current).strip())
                current = []
    out.append("".join(current).strip())
    return [" ".join(s.split()) for s in out if s.strip()]


def identity_columns(script: str) -> dict[str, str]:
    """table -> its ``INTEGER PRIMARY KEY`` column (SQLite's rowid alias; ``lastrowid`` reads it)."""
    found = {}
    for stmt in statements(script):
        m = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", stmt, re.IGNORECASE)
        alias = _ROWID_ALIAS.search(stmt)
        if m and alias:
            found[m.group(1)] = alias.group(1)
    return found


def _table_for_postgres(code: str) -> str:
    code = re.sub(r"\)\s*WITHOUT\s+ROWID\s*$", ")", code, flags=re.IGNORECASE)
    code = _ROWID_ALIAS.sub(r"\1 INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", code)
    return re.sub(r"\b(INTEGER|REAL|BLOB|TEXT)\b", lambda m: _TYPES[m.group(1).upper()], code, flags=re.IGNORECASE)


def column_for_postgres(declaration: str) -> str:
    """A column's type and constraints (``INTEGER NOT NULL DEFAULT 0``), as PostgreSQL takes them."""
    return _map_code(declaration, _table_for_postgres)


def schema_for_postgres(script: str) -> list[str]:
    """``schema.sql``'s statements as PostgreSQL runs them (every one still ``IF NOT EXISTS``)."""
    out = []
    for stmt in statements(script):
        if stmt.upper().startswith("PRAGMA"):
            continue  # journal mode and the like: PostgreSQL's own settings
        if stmt.upper().startswith("CREATE TABLE"):
            stmt = _map_code(stmt, _table_for_postgres)
        elif (m := _INDEX_ON.match(stmt)) is not None:
            close, _ = _top_level_comma(stmt, m.end() - 1)
            columns = [c.strip() for c in stmt[m.end():close].split(",")]
            wrapped = ", ".join(c if re.fullmatch(r"\w+", c) else f"({c})" for c in columns)
            stmt = f"{stmt[:m.end()]}{wrapped}{stmt[close:]}"
        out.append(stmt)
    return out
