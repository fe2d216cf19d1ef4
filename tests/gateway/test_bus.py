"""The runtime's event bus: fan-out, bounded queues that drop the oldest, and `lagged`."""

from __future__ import annotations

import asyncio

import pytest

from gateway.bus import BusFull, EventBus


async def test_every_subscriber_gets_every_message_in_order() -> None:
    bus = EventBus()
    with bus.subscribe() as a, bus.subscribe() as b:
        for n in range(3):
            bus.publish("card_inserted", {"n": n})
        for sub in (a, b):
            got = [await asyncio.wait_for(sub.get(), 5) for _ in range(3)]
            assert [m["data"]["n"] for m in got] == [0, 1, 2]
            assert all(m["type"] == "card_inserted" and m["at"].endswith("Z") for m in got)
    assert bus.subscribers == 0


async def test_a_slow_subscriber_loses_the_oldest_and_is_told() -> None:
    bus = EventBus(queue_size=8)
    with bus.subscribe() as slow, bus.subscribe() as fast:
        for n in range(20):  # never waits, whatever the subscribers do
            bus.publish("tick", {"n": n})
            assert fast.pending() == 1
            await fast.get()
        assert slow.pending() == 8
        lagged = await slow.get()
        assert lagged == {"type": "lagged", "data": {"dropped": 12}}
        rest = [(await slow.get())["data"]["n"] for _ in range(8)]
        assert rest == list(range(12, 20))
        assert slow.dropped == 0 and slow.dropped_total == 12


async def test_get_waits_for_the_next_message() -> None:
    bus = EventBus()
    with bus.subscribe() as sub:
        waiter = asyncio.create_task(sub.get())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        bus.publish("link_up", {})
        assert (await asyncio.wait_for(waiter, 5))["type"] == "link_up"


def test_subscribers_are_bounded() -> None:
    bus = EventBus(max_subscribers=2)
    first, _second = bus.subscribe(), bus.subscribe()
    with pytest.raises(BusFull, match="2 event subscribers"):
        bus.subscribe()
    first.close()
    bus.subscribe().close()  # a freed place can be taken again
