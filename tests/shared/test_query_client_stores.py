"""``StoreClient`` given several stores: the first that answers; when none does, one error that says how each
failed; one store alone fails exactly as before lists."""

from __future__ import annotations

import socket

import pytest

from shared.query_client import NoStoreAnswers, StoreClient, StoreUnreachable
from shared.store_list import StoreListError


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{sock.getsockname()[1]}"


async def test_one_dead_store_fails_as_before():
    url = dead_url()
    with pytest.raises(StoreUnreachable) as err:
        async with StoreClient(url, open_timeout=2):
            pass
    assert not isinstance(err.value, NoStoreAnswers)
    assert err.value.message.startswith(f"cannot reach the store at {url}/api (")
    assert err.value.message.endswith("is `sht store` running there, and is the URL right?")


async def test_with_every_store_dead_the_error_names_each():
    first, second = dead_url(), dead_url()
    with pytest.raises(NoStoreAnswers) as err:
        async with StoreClient(f"{first},{second}", open_timeout=2):
            pass
    assert [store for store, _ in err.value.failures] == [first, second]
    assert err.value.code == "unreachable"
    assert err.value.message.startswith(f"none of the 2 stores answered: {first}/api: ")
    assert f"; {second}/api: " in err.value.message and "are the URLs right?" in err.value.message


def test_a_bad_list_is_refused_before_connecting():
    with pytest.raises(StoreListError, match="item 2 of 2 is empty"):
        StoreClient("ws://a:8100,")
