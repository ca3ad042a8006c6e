import asyncio

from shared.fanout import AccessUnit, FanOut


def unit(i: int, key: bool) -> AccessUnit:
    return AccessUnit.build(i, key, b"\x00\x00\x00\x01" + bytes([i % 256]))


async def test_subscriber_starts_on_a_keyframe():
    fan = FanOut()
    sub = fan.subscribe("v", 10)
    for i, key in enumerate([False, False, True, False]):
        fan.publish(unit(i, key))
    first = await sub.get()
    assert first.keyframe and first.capture_us == 2
    assert sub.skipped == 2


async def test_all_subscribers_share_one_message_object():
    fan = FanOut()
    a, b = fan.subscribe("a", 5), fan.subscribe("b", 5)
    u = unit(1, True)
    fan.publish(u)
    assert (await a.get()).message is (await b.get()).message


async def test_slow_subscriber_skips_to_next_keyframe_and_never_blocks_the_publisher():
    fan = FanOut()
    slow, fast = fan.subscribe("slow", 8), fan.subscribe("fast", 1000)
    pattern = [i % 5 == 0 for i in range(47)]  # keyframe every 5
    for i, key in enumerate(pattern):
        fan.publish(unit(i, key))  # returns at once whatever the consumers do
    assert fast.backlog == 47
    got = []
    while slow.backlog:
        got.append(await slow.get())
    assert got and got[0].keyframe and got[0].capture_us == 40  # the freshest whole GOP
    # What it did get is a decodable run: consecutive from a keyframe.
    times = [u.capture_us for u in got]
    assert times == list(range(times[0], times[0] + len(times)))
    assert slow.skipped == 47 - len(got)


async def test_end_of_stream_reaches_everyone():
    fan = FanOut()
    sub = fan.subscribe("v", 3)
    fan.end()
    assert await asyncio.wait_for(sub.get(), 1) is None
    late = fan.subscribe("late", 3)
    assert await asyncio.wait_for(late.get(), 1) is None


async def test_unsubscribed_gets_nothing_more():
    fan = FanOut()
    sub = fan.subscribe("v", 3)
    fan.unsubscribe(sub)
    fan.publish(unit(0, True))
    assert sub.backlog == 0
