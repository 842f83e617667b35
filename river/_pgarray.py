"""Array parameters as Postgres text literals (``'{1,2,NULL}'``), built with whole-list string
operations instead of per-element Python work.

psycopg adapts a Python list in Python, element by element (``ListBinaryDumper``: a dumper
call, a length header and two list appends per element, after a scan for the element type),
about 0.3 µs per element and column: for the completer's and ``insert_many``'s parallel
arrays that was several µs of client CPU per job. The functions here return one ``str`` per
column, sent as a text parameter and cast in SQL (``%(id)s::bigint[]``), so Postgres parses
the literal (``array_in``, about as cheap for the server as the binary form). Every element
of a text-like array is quoted, with ``\\`` and ``"`` escaped, so any string (empty, ``NULL``,
braces, commas, whitespace, quotes) reads back as itself; ``None`` is an unquoted ``NULL``.
A string holding NUL is refused (``psycopg.DataError``), as Postgres refuses it in any form.

:func:`all_null` lets a caller send one SQL NULL for a column that is ``None`` throughout:
in a multi-argument ``unnest(a, b, ...)`` a NULL (or shorter) array is padded with NULLs, so
the rows are the same as with an array of NULLs, at no cost on either side.

Timestamps are not here: formatting a datetime as text costs more than psycopg's binary
dumper, and parsing the text costs the server about three times more (river/_sql/job.sql).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["all_null", "bytea_array", "int_array", "text_array"]

#: Separator of the joined elements while quotes and backslashes are escaped in one pass over
#: the whole column: a character Postgres text cannot hold, checked by counting before it is
#: relied on.
_SEP = "\x00"
#: Stands for a None element among strings while they are joined; checked by counting too.
_NULL_MARK = "\x01"
_int_text = int.__repr__  # the digits of any int (also of an int subclass), TypeError otherwise


def all_null(values: Sequence[object]) -> bool:
    """Whether every element is None (true for an empty list too)."""
    # The ends first: most columns have a value there, and comparing every element of a list
    # of strings or datetimes with None costs about 20 ns each.
    if not values:
        return True
    return values[0] is None and values[-1] is None and values.count(None) == len(values)


def int_array(values: Sequence[int | None]) -> str:
    """A ``bigint[]`` / ``integer[]`` / ``smallint[]`` literal of ``values`` (None: NULL).
    TypeError for an element that is neither an int nor None."""
    n = len(values)
    if not n:
        return "{}"
    first = values[0]
    if type(first) is int and values[-1] == first and values.count(first) == n:
        # One value throughout (priority, max_attempts, seen_attempt): formatted once.
        return "{" + ",".join([_int_text(first)] * n) + "}"
    try:
        return "{" + ",".join(map(_int_text, values)) + "}"
    except TypeError:
        if None not in values:
            raise
    return "{" + ",".join(["NULL" if v is None else _int_text(v) for v in values]) + "}"


def text_array(values: Sequence[str | None]) -> str:
    """A ``text[]`` literal of ``values`` (None: NULL), also for types read from text: cast it
    (``::jsonb[]``, ``::bytea[]``) and each element is parsed as that type. TypeError for an
    element that is neither a str nor None."""
    n = len(values)
    if not n:
        return "{}"
    try:
        return _quoted(values)  # type: ignore[arg-type]  # TypeError: None among them
    except TypeError:
        nulls = values.count(None)
        if not nulls:
            raise
    if nulls == n:
        return "{" + ",".join(["NULL"] * n) + "}"
    literal = _quoted([_NULL_MARK if v is None else v for v in values])
    if literal.count(_NULL_MARK) != nulls:
        # An element holds the mark itself: NULLs written one by one.
        return _quoted_one_by_one(values)
    return literal.replace('"' + _NULL_MARK + '"', "NULL")


def _quoted(values: Sequence[str]) -> str:
    """The literal of ``values`` (at least one), every element quoted."""
    n = len(values)
    first = values[0]
    if '"' not in first and "\\" not in first:
        body = '","'.join(values)
        if "\\" not in body and body.count('"') == 2 * (n - 1):
            return '{"' + body + '"}'  # nothing to escape: the quotes are the separators'
    # Quotes or backslashes to escape (JSON texts): in one pass over the whole column, unless
    # an element holds the separator (then Postgres refuses the element anyway).
    body = _SEP.join(values)
    if body.count(_SEP) == n - 1:
        body = body.replace("\\", "\\\\").replace('"', '\\"').replace(_SEP, '","')
    else:
        body = '","'.join([v.replace("\\", "\\\\").replace('"', '\\"') for v in values])
    return '{"' + body + '"}'


def _quoted_one_by_one(values: Sequence[str | None]) -> str:
    return (
        "{"
        + ",".join(
            [
                "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                for v in values
            ]
        )
        + "}"
    )


def bytea_array(values: Sequence[bytes | None]) -> str:
    """A ``bytea[]`` literal of ``values`` (None: NULL), in bytea's hex format."""
    return text_array([None if v is None else "\\x" + v.hex() for v in values])
