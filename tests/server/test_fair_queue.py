"""fair_queue.py: owners served in turn, bounds per owner and in total, items taken back out."""

from __future__ import annotations

import pytest

from medviz_core.errors import BusyError
from server.fair_queue import FairQueue


def test_owners_are_served_in_turn_and_each_owner_in_order() -> None:
    line: FairQueue[str] = FairQueue(per_owner=10, total=10)
    for item in ("a1", "a2", "a3"):
        line.push("a", item)
    for item in ("b1", "b2"):
        line.push("b", item)
    line.push("c", "c1")
    assert [line.pop() for _ in range(7)] == ["a1", "b1", "c1", "a2", "b2", "a3", None]


def test_past_the_bound_of_one_owner_it_is_busy_and_others_still_queue() -> None:
    line: FairQueue[int] = FairQueue(per_owner=2, total=10)
    line.push("a", 1)
    line.push("a", 2)
    with pytest.raises(BusyError) as error:
        line.push("a", 3)
    line.push("b", 4)
    assert str(error.value) == ("this connection has 2 analyses waiting, the limit per connection; ask again when "
                                "one has finished")
    assert (len(line), line.waiting("a"), line.waiting("b")) == (3, 2, 1)


def test_past_the_total_bound_everyone_is_busy() -> None:
    line: FairQueue[int] = FairQueue(per_owner=5, total=3)
    for n, owner in enumerate("abc"):
        line.push(owner, n)
    with pytest.raises(BusyError) as error:
        line.push("d", 9)
    assert str(error.value) == "the server has 3 analyses waiting, its limit; ask again when some have finished"


def test_a_discarded_item_frees_its_place_and_never_comes_out() -> None:
    line: FairQueue[str] = FairQueue(per_owner=1, total=5)
    line.push("a", "x")
    assert line.discard("a", "x") is True and line.discard("a", "x") is False
    line.push("a", "y")
    assert [line.pop(), line.pop()] == ["y", None]


def test_pop_takes_turns_among_the_items_it_may_take_and_a_preempted_item_goes_first() -> None:
    line: FairQueue[str] = FairQueue(per_owner=1, total=4)
    for owner, item in (("a", "a-other"), ("b", "b-mine"), ("c", "c-mine")):
        line.push(owner, item)
    assert line.pop(lambda item: item.endswith("mine")) == "b-mine"
    line.push_front("c", "c-preempted")  # past c's bound of 1: it was admitted before
    assert [line.pop(), line.pop(), line.pop(), line.pop()] == ["a-other", "c-preempted", "c-mine", None]
