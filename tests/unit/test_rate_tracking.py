"""The rate tracking's bookkeeping (no Redis): what an invalidation push, a flush and the clock do to trust."""

from __future__ import annotations

from collections.abc import Iterable

from ces.adapters.redis.rate_tracking import RateTracking


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracking(clock: Clock) -> tuple[RateTracking, list[list[str] | None]]:
    heard: list[list[str] | None] = []

    def forget(keys: Iterable[str] | None) -> None:
        heard.append(None if keys is None else list(keys))

    t = RateTracking(client=object(), key_prefix="p:", heartbeat=0.5, clock=clock)  # type: ignore[arg-type]
    t.listen(forget)
    return t, heard


async def test_trust_lasts_two_heartbeats_after_the_last_thing_heard() -> None:
    clock = Clock()
    t, _ = tracking(clock)
    assert not t.trusted()  # never connected
    t._trust()
    assert t.trusted()
    clock.now += 0.99
    assert t.trusted()
    clock.now += 0.02
    assert not t.trusted()


async def test_an_invalidation_names_its_keys_and_voids_a_read_in_flight() -> None:
    clock = Clock()
    t, heard = tracking(clock)
    t._trust()
    mark = t.mark()
    assert t.unchanged_since(mark)
    await t._on_invalidate([b"invalidate", [b"p:EUR:USD", b"p:EUR:JPY"]])
    assert heard == [["p:EUR:USD", "p:EUR:JPY"]]
    assert not t.unchanged_since(mark)
    assert t.generation == mark[0]  # other keys stay confirmed


async def test_a_flush_voids_everything_confirmed() -> None:
    clock = Clock()
    t, heard = tracking(clock)
    t._trust()
    generation = t.generation
    await t._on_invalidate([b"invalidate", None])
    assert heard == [None]
    assert t.generation == generation + 1


async def test_a_lost_connection_is_not_trusted_and_voids_what_was_confirmed() -> None:
    clock = Clock()
    t, _ = tracking(clock)
    t._trust()
    mark = t.mark()
    t._lose()
    assert not t.trusted()
    assert not t.unchanged_since(mark)
    t._trust()
    assert t.trusted() and not t.unchanged_since(mark)  # a new connection: confirm again


async def test_a_key_that_is_not_utf8_does_not_hide_the_others_in_its_push() -> None:
    """Anyone who may write under the prefix can name a key with any bytes; one push may name several keys."""
    clock = Clock()
    t, heard = tracking(clock)
    t._trust()
    await t._on_invalidate([b"invalidate", [b"p:\xff\xfe\x00", b"p:EUR:USD"]])
    assert heard and heard[0] is not None and "p:EUR:USD" in heard[0]
