"""A small per-process cache of list answers keyed by the event's analytics version.

Every write to an event's sessions (rollup, duration sync, PUT) bumps `analyticsVersion` on the
event *after* writing. A request reads the event document anyway (existence and host checks), so
a cached answer is used only when built at the version the request just read: it can never hold
numbers older than the last rollup that finished before the request began.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    body: bytes
    etag: str


class ListCache:
    def __init__(self, max_entries: int = 256) -> None:
        self._entries: OrderedDict[tuple[object, ...], CachedAnswer] = OrderedDict()
        self._max = max_entries

    def get(self, key: tuple[object, ...]) -> CachedAnswer | None:
        answer = self._entries.get(key)
        if answer is not None:
            self._entries.move_to_end(key)
        return answer

    def put(self, key: tuple[object, ...], answer: CachedAnswer) -> None:
        self._entries[key] = answer
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
