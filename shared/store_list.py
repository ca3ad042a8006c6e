"""Several stores for one client (``--store ws://A:8100,ws://B:8100``): parsing, and which store to use when.

Sans-I/O: the node's uploader and control link, the console, ``sht relay`` and the CLI own the sockets and the
clock; they ask ``StoreRotation.choose`` where to connect and tell it what happened (``succeeded``, ``failed``).

The policy, in words:
- the first store of the list is tried first; the one that answers is *current* and stays current while it
  works (no moving back when an earlier store returns: the stores of a cluster are equals, and moving back
  would break working links for nothing);
- when the current store fails (refused, closed, no ack in time), the next store in the list that is not
  backing off becomes current at once (delay 0): another store is there, so there is no reason to wait;
- every store backs off on its own (doubling from ``initial_s`` to ``maximum_s``, with jitter): a failed
  store is tried again after the others, and only once its own delay has passed;
- when every store is backing off, the one whose delay ends first is next, after that delay (the node
  keeps spooling meanwhile).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = ("ws", "wss", "http", "https")
EXAMPLE = "ws://nas1:8100,ws://nas2:8100"


class StoreListError(ValueError):
    """A ``--store`` value (or the node config's ``store``) that is not a list of store URLs."""


def parse_store_list(value: str | Sequence[str], what: str = "--store") -> tuple[str, ...]:
    """The store URLs of ``value``: one URL, URLs separated by commas, or a sequence of single URLs.

    Each is ``ws://``, ``wss://``, ``http://`` or ``https://`` HOST[:PORT][/PATH] (a bare HOST:PORT means
    ``ws://``, as it always has). Items are stripped of spaces around them and of a trailing ``/``. Raises
    ``StoreListError`` naming the item for an empty item, a bad URL or a store given twice.
    """
    if isinstance(value, str):
        items = value.split(",")
    else:
        items = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise StoreListError(f"{what}: item {i + 1} is {item!r}, not a URL string like 'ws://nas1:8100'")
            if "," in item:
                raise StoreListError(f"{what}: item {i + 1} ({item!r}) holds a comma: give one URL per item")
            items.append(item)
    if not items:
        raise StoreListError(f"{what} is empty: give at least one store URL, e.g. {EXAMPLE}")
    stores: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(items):
        item = raw.strip()
        if not item:
            raise StoreListError(f"{what}: item {i + 1} of {len(items)} is empty in {_shown(value)}: separate store "
                                 f"URLs with single commas, e.g. {EXAMPLE}")
        url = _check_url(item, f"{what}: item {i + 1} ({item!r})")
        key = same_store_key(url)
        if key in seen:
            raise StoreListError(f"{what}: item {i + 1} ({item!r}) is the same store as item {seen[key] + 1}: "
                                 "give each store once")
        seen[key] = i
        stores.append(url)
    return tuple(stores)


def _shown(value: str | Sequence[str]) -> str:
    return repr(value) if isinstance(value, str) else repr(list(value))


def _check_url(item: str, where: str) -> str:
    if any(c.isspace() for c in item):
        raise StoreListError(f"{where} holds a space: give URLs like {EXAMPLE}")
    scheme, sep, _ = item.partition("://")
    if sep and scheme.lower() not in SCHEMES:
        raise StoreListError(f"{where} must start with ws://, wss://, http:// or https://")
    parts = urlsplit(item if sep else "ws://" + item)
    try:
        port = parts.port
    except ValueError:
        raise StoreListError(f"{where} has a port that is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise StoreListError(f"{where} names no host: give e.g. ws://nas1:8100")
    if port == 0:
        raise StoreListError(f"{where} has port 0: give the store's port (8100 by default)")
    if "@" in parts.netloc:
        raise StoreListError(f"{where} holds a user or password: tokens go in --token / SHT_TOKEN, not the URL")
    if parts.query or parts.fragment:
        raise StoreListError(f"{where} has a query or fragment: a store URL is scheme://host:port[/path]")
    return item.rstrip("/")


def same_store_key(url: str) -> str:
    """What two URLs of one store have in common: ws:// and http:// of a host and port are the same store."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower() if sep else "ws"
    parts = urlsplit(("wss" if scheme in ("wss", "https") else "ws") + "://" + (rest if sep else url))
    default_port = 443 if parts.scheme == "wss" else 80
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{parts.port or default_port}{parts.path.rstrip('/')}"


def is_tls(url: str) -> bool:
    return url.lower().startswith(("wss://", "https://"))


def joined(stores: Sequence[str]) -> str:
    """The list as ``--store`` takes it."""
    return ",".join(stores)


@dataclass(frozen=True)
class StoreStatus:
    """One store of the list, as health shows it."""

    url: str
    current: bool
    failures: int  # in a row; 0 once it answers again
    retry_in_s: float  # 0: may be tried now
    last_error: str | None


class _State:
    __slots__ = ("url", "failures", "retry_at", "last_error")

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures = 0
        self.retry_at = float("-inf")
        self.last_error: str | None = None


def equal_jitter(ceiling: float) -> float:
    """A delay in [ceiling/2, ceiling]: never near zero, yet spread (as ``shared.backoff.Backoff``)."""
    return random.uniform(ceiling / 2, ceiling)


class StoreRotation:
    """Which store of a list to use, per the policy in this module's docstring. Times are any monotonic clock's
    seconds (``loop.time()``), passed in by the caller. One rotation may be shared by several links of a client
    (the node's upload and control links): ``failed`` for a store that is no longer current moves nothing."""

    def __init__(self, stores: Sequence[str], initial_s: float = 0.25, maximum_s: float = 10.0,
                 jitter: Callable[[float], float] = equal_jitter) -> None:
        if not stores:
            raise StoreListError(f"no store given: give at least one store URL, e.g. {EXAMPLE}")
        self._states = [_State(url) for url in stores]
        self.initial_s, self.maximum_s, self.jitter = initial_s, maximum_s, jitter
        self._current = 0
        self._chosen: int | None = None  # the store last handed out by choose or confirmed by succeeded
        self.switches = 0  # how often the store handed out changed: failovers

    @property
    def stores(self) -> tuple[str, ...]:
        return tuple(s.url for s in self._states)

    @property
    def current(self) -> str:
        return self._states[self._current].url

    def retry_now(self) -> None:
        """Forget the backoff: every store may be tried at once (a node about to stop tries once more)."""
        for state in self._states:
            state.retry_at = float("-inf")

    @property
    def all_failing(self) -> bool:
        """True when no store has answered since its last failure: nothing to upload to."""
        return all(s.failures > 0 for s in self._states)

    def choose(self, now: float) -> tuple[str, float]:
        """The store to connect to next and how many seconds to wait first (0: now). It becomes current."""
        n = len(self._states)
        for step in range(n):  # the current store first, then the others in list order
            at = (self._current + step) % n
            if self._states[at].retry_at <= now:
                self._move_to(at)
                return self._states[at].url, 0.0
        # Every store is backing off: the one free soonest (ties go to list order from the current one).
        at = min(((self._current + step) % n for step in range(n)), key=lambda i: self._states[i].retry_at)
        self._move_to(at)
        return self._states[at].url, self._states[at].retry_at - now

    def order(self, now: float) -> list[str]:
        """Every store, in the order to try them now: ``choose``'s pick first, then the ready ones in list order,
        then those backing off, the soonest free first. For clients that try the whole list in one go."""
        first, _ = self.choose(now)
        n = len(self._states)
        rest = [self._states[(self._current + step) % n] for step in range(1, n)]
        ready = [s.url for s in rest if s.retry_at <= now]
        waiting = [s.url for s in sorted((s for s in rest if s.retry_at > now), key=lambda s: s.retry_at)]
        return [first, *ready, *waiting]

    def succeeded(self, url: str) -> None:
        """``url`` answered: it is current, and its backoff starts over."""
        at = self._index(url)
        state = self._states[at]
        state.failures, state.retry_at, state.last_error = 0, float("-inf"), None
        self._move_to(at)

    def failed(self, url: str, now: float, reason: str) -> float:
        """``url`` failed (refused, closed, timed out): it backs off; if it was current, the next store of the
        list is. Returns its own backoff delay in seconds."""
        at = self._index(url)
        state = self._states[at]
        state.failures += 1
        delay = self.jitter(min(self.maximum_s, self.initial_s * 2 ** (state.failures - 1)))
        state.retry_at, state.last_error = now + delay, reason
        if at == self._current:  # the next store is tried first, even if this one's delay were 0
            self._current = (at + 1) % len(self._states)
        return delay

    def status(self, now: float) -> list[StoreStatus]:
        return [StoreStatus(s.url, i == self._current, s.failures, max(0.0, s.retry_at - now),
                            s.last_error) for i, s in enumerate(self._states)]

    def _index(self, url: str) -> int:
        for i, state in enumerate(self._states):
            if state.url == url:
                return i
        raise KeyError(f"{url} is not one of the stores {joined(self.stores)}")

    def _move_to(self, at: int) -> None:
        self._current = at
        if self._chosen is not None and at != self._chosen:
            self.switches += 1
        self._chosen = at
