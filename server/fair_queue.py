"""A bounded queue shared fairly by many owners: each owner's items in order, owners taken in turn.

Owns: `FairQueue`, used by the worker for analysis tasks: `push` refuses (BusyError) past
`per_owner` items of one owner or `total` items in all, `pop` takes the oldest item (of those
`accept` allows) of the owner whose turn it is and moves that owner to the back, `push_front`
puts an admitted item back at the head of its owner's line (a preempted task), `discard` takes
an item back out (a cancelled job frees its place at once). Not threadsafe: the worker calls it
under its lock. Does not own what the items are or when they run (worker.py).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

from medviz_core.errors import BusyError

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Round-robin over owners, first in first out within one owner."""

    def __init__(self, per_owner: int, total: int) -> None:
        self.per_owner = per_owner
        self.total = total
        self._owners: OrderedDict[str, deque[T]] = OrderedDict()
        self._count = 0

    def check_room(self, owner: str) -> None:
        """BusyError if `owner` may not queue one more item now."""
        if self._count >= self.total:
            raise BusyError(f"the server has {self._count} analyses waiting, its limit; ask again when some "
                            "have finished")
        waiting = len(self._owners.get(owner, ()))
        if waiting >= self.per_owner:
            raise BusyError(f"this connection has {waiting} analyses waiting, the limit per connection; ask again "
                            "when one has finished")

    def push(self, owner: str, item: T) -> None:
        self.check_room(owner)
        self._owners.setdefault(owner, deque()).append(item)
        self._count += 1

    def push_front(self, owner: str, item: T) -> None:
        """Back at the head of its owner's line, bounds aside: it was admitted once already."""
        self._owners.setdefault(owner, deque()).appendleft(item)
        self._count += 1

    def pop(self, accept: Callable[[T], bool] | None = None) -> T | None:
        """The next item by turns (of those `accept` allows), or None when there is none."""
        for owner, items in self._owners.items():
            item = next((i for i in items if accept is None or accept(i)), None)
            if item is None:
                continue
            items.remove(item)
            self._count -= 1
            if items:
                self._owners.move_to_end(owner)
            else:
                del self._owners[owner]
            return item
        return None

    def discard(self, owner: str, item: T) -> bool:
        """Take a waiting item out; False if it is not waiting (already taken)."""
        items = self._owners.get(owner)
        if items is None or item not in items:
            return False
        items.remove(item)
        self._count -= 1
        if not items:
            del self._owners[owner]
        return True

    def waiting(self, owner: str) -> int:
        return len(self._owners.get(owner, ()))

    def __len__(self) -> int:
        return self._count
