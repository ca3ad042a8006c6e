"""The store-wide ``webhooks`` setting: a list of ``{url, secret?, cameras?, labels?, zones?}``, checked here once
for the store, ``sht settings``/``sht webhook`` and the API (shared/settings.py ``STORE_SETTINGS``).

``url``: http:// or https://, with a host, at most 2,000 characters. ``secret``: 16 to 256 printable characters
(without one, the store's own secret signs: ``sht webhook secret --root DIR``). ``cameras`` (camera ids),
``labels`` and ``zones``: the webhook's own filters, each empty or absent for "any". Read back through the API,
secrets are replaced by ``"***"`` (``redacted``): anyone with a viewer token may read the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.ids import InvalidId, check_id

MAX_WEBHOOKS = 20
MAX_URL_CHARS = 2000
SECRET_CHARS = (16, 256)
HIDDEN = "***"
_KEYS = ("url", "secret", "cameras", "labels", "zones")


@dataclass(frozen=True)
class WebhookSpec:
    url: str
    secret: str | None = None
    cameras: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url}
        if self.secret is not None:
            out["secret"] = self.secret
        for key in ("cameras", "labels", "zones"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        return out


def check_url(url: object) -> str:
    """A webhook URL as given, if it is one; else ValueError saying what is wrong."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"a webhook url must be a string such as https://example.com/hook, got {url!r}")
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"a webhook url may have at most {MAX_URL_CHARS} characters, got {len(url)}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a webhook url must be http://HOST/... or https://HOST/..., got {url[:100]!r}")
    if not url.isprintable() or " " in url:
        raise ValueError(f"a webhook url cannot hold spaces or control characters, got {url[:100]!r}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
    except ValueError as exc:
        raise ValueError(f"webhook url {url[:100]!r}: {exc}") from None
    return url


def _names(item: dict[str, Any], key: str, check: Any) -> tuple[str, ...]:
    value = item.get(key) or []
    if not isinstance(value, list) or len(value) > 64:
        raise ValueError(f"a webhook's {key} must be a list of at most 64 names, got {value!r:.100}")
    return tuple(check(name) for name in value)


def _camera(name: object) -> str:
    try:
        return check_id(name, "camera")
    except InvalidId as exc:
        raise ValueError(f"a webhook's cameras: {exc}") from None


def _label(name: object) -> str:
    from shared.settings import label_problem  # shared.settings imports this module

    if (problem := label_problem(name)) is not None:
        raise ValueError(f"a webhook's labels or zones: {problem}")
    assert isinstance(name, str)
    return name


def read_webhook(item: object) -> WebhookSpec:
    if isinstance(item, str):  # a bare URL is a webhook without filters
        item = {"url": item}
    if not isinstance(item, dict):
        raise ValueError(f"each webhook must be an object {{\"url\": ..., \"secret\": ...}}, got {item!r:.100}")
    unknown = sorted(set(item) - set(_KEYS))
    if unknown:
        raise ValueError(f"a webhook has no {', '.join(unknown)}; its keys are {', '.join(_KEYS)}")
    secret = item.get("secret")
    if secret is not None and (not isinstance(secret, str) or not secret.isprintable()
                               or not SECRET_CHARS[0] <= len(secret) <= SECRET_CHARS[1]):
        raise ValueError(f"a webhook's secret must be {SECRET_CHARS[0]} to {SECRET_CHARS[1]} printable characters "
                         "(or left out: the store's own secret signs)")
    return WebhookSpec(check_url(item.get("url")), secret, _names(item, "cameras", _camera),
                       _names(item, "labels", _label), _names(item, "zones", _label))


def read_webhooks(value: object) -> list[WebhookSpec]:
    if not isinstance(value, list):
        raise ValueError(f"webhooks must be a list of {{\"url\": ...}} objects, got {value!r:.100}")
    if len(value) > MAX_WEBHOOKS:
        raise ValueError(f"at most {MAX_WEBHOOKS} webhooks, got {len(value)}")
    hooks = [read_webhook(item) for item in value]
    urls = [hook.url for hook in hooks]
    if len(set(urls)) != len(urls):
        raise ValueError("webhooks lists a url more than once: " + ", ".join(sorted({u for u in urls
                                                                                     if urls.count(u) > 1})))
    return hooks


def check_webhooks(value: object) -> list[dict[str, Any]]:
    """The setting's value, checked and tidied; ValueError saying what is wrong."""
    return [hook.to_json() for hook in read_webhooks(value)]


def redacted(value: object) -> object:
    """The setting as anyone may read it: each secret replaced by ``***``."""
    if not isinstance(value, list):
        return value
    return [{**item, "secret": HIDDEN} if isinstance(item, dict) and item.get("secret") else item for item in value]
