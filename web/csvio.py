"""CSV answers: the `Accept` check every CSV route makes (406), cells a spreadsheet reads as
text, and rows streamed a batch at a time."""

from __future__ import annotations

import csv
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiohttp import web
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from shared.errors import NotAcceptable
from shared.logs import request_id_var

CSV_MEDIA = "text/csv"
# A spreadsheet runs a cell starting with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def require_csv(request: web.Request) -> None:
    """Raise NotAcceptable (406) unless the request's `Accept` takes `text/csv`.

    Parsed as RFC 9110 says (werkzeug's parser): wildcards (`*/*`, `text/*`), q-values (`q=0`
    refuses), the most specific range deciding (`text/csv;q=0, */*` refuses CSV). A missing or
    empty `Accept` takes anything.
    """
    header = request.headers.get("Accept", "").strip()
    if not header:
        return
    if parse_accept_header(header, MIMEAccept).quality(CSV_MEDIA) <= 0:
        raise NotAcceptable(f"this route answers {CSV_MEDIA}; Accept was {header[:200]!r}")


def csv_headers(filename: str) -> dict[str, str]:
    """Headers of a CSV download; the request id is sent with the first byte (a streamed answer
    is prepared before the middleware could add it)."""
    return {
        "Content-Type": f"{CSV_MEDIA}; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Request-Id": request_id_var.get() or "",
    }


def csv_text(text: str) -> str:
    """Text a spreadsheet shows as written: a leading formula character is quoted away."""
    return "'" + text if text[:1] in _FORMULA_STARTS else text


def csv_cell(value: Any) -> Any:
    """Empty for null, two decimals for a fraction, anything else as it is."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return value


class _Lines:
    """What csv.writer writes, kept until it is sent."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def take(self) -> bytes:
        data, self.parts = "".join(self.parts).encode(), []
        return data


async def stream_csv(
    request: web.Request,
    filename: str,
    header: Sequence[str],
    first: Iterable[Sequence[Any]],
    more: Callable[[], Awaitable[Iterable[Sequence[Any]]]],
) -> web.StreamResponse:
    """The header row, then `first` and every further batch `more()` gives until an empty one,
    one write per batch. Read `first` before calling: an error there still gets the envelope."""
    response = web.StreamResponse(headers=csv_headers(filename))
    await response.prepare(request)
    lines = _Lines()
    writer = csv.writer(lines, lineterminator="\r\n")
    writer.writerow(header)
    rows = list(first)
    while rows:
        writer.writerows([csv_cell(value) for value in row] for row in rows)
        await response.write(lines.take())
        rows = list(await more())
    if lines.parts:
        await response.write(lines.take())
    await response.write_eof()
    return response
