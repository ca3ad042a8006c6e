"""Store-wide settings (store/notify/store_settings.py) on SQLite and PostgreSQL: kept under camera '*' with
history, checked by the spec, secrets never read back, a secret sent back as *** kept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.settings import SettingError
from store.index.db import Index
from store.index.settings import history
from store.notify.store_settings import load_store_setting, set_store_setting, store_settings

HOOK = {"url": "https://hooks.example.com/a", "secret": "s" * 20, "cameras": ["cam0"]}


@pytest.fixture
async def index(index_url: str) -> AsyncIterator[Index]:
    idx = await Index.open(index_url)
    yield idx
    await idx.close()


async def test_the_webhooks_setting_is_kept_with_history_and_its_secrets_hidden(index: Index) -> None:
    assert await load_store_setting(index.conn, "webhooks") == []
    old, new = await set_store_setting(index.conn, "webhooks", [HOOK], "tester", 1)
    assert (old, new) == ([], [{**HOOK, "secret": "***"}])
    assert await load_store_setting(index.conn, "webhooks") == [HOOK], "the store itself reads the secret"
    assert await store_settings(index.conn) == {"webhooks": [{**HOOK, "secret": "***"}]}
    # Read back and sent again with a second webhook: the first keeps its secret.
    shown = (await store_settings(index.conn))["webhooks"]
    await set_store_setting(index.conn, "webhooks", [*shown, "http://10.0.0.5:8099/hook"], "tester", 2)
    assert await load_store_setting(index.conn, "webhooks") == [HOOK, {"url": "http://10.0.0.5:8099/hook"}]
    rows = await history(index.conn, None, 10)
    assert [(r["camera"], r["key"], r["changed_by"]) for r in rows] == [("*", "webhooks", "tester")] * 2
    assert "s" * 20 not in repr(rows), "no secret in the history"
    with pytest.raises(SettingError, match="webhook url must be http"):
        await set_store_setting(index.conn, "webhooks", [{"url": "file:///etc/passwd"}], "tester", 3)
    with pytest.raises(SettingError, match="unknown store-wide setting"):
        await set_store_setting(index.conn, "recording_mode", "motion", "tester", 3)
