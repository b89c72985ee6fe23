"""A slot handed to run_holding is released when the worker thread ends, never before: a caller cancelled while
its thread still talks to the PACS leaves the slot held until then (the one Send to PACS, a retrieval's place)."""

from __future__ import annotations

import asyncio
import threading

from server.pacs.holding import pacs_threads, run_holding


def test_a_cancelled_caller_keeps_the_slot_until_its_thread_ends() -> None:
    lock = threading.Lock()
    go, entered = threading.Event(), threading.Event()

    def work() -> str:
        entered.set()
        go.wait(10)
        return "stored"

    async def scenario() -> tuple[bool, bool, bool]:
        lock.acquire()
        caller = asyncio.ensure_future(run_holding(pacs_threads(), lock.release, work))
        await asyncio.to_thread(entered.wait, 10)
        caller.cancel()
        await asyncio.gather(caller, return_exceptions=True)
        held_after_cancel = lock.locked()
        go.set()
        for _ in range(200):
            if not lock.locked():
                break
            await asyncio.sleep(0.01)
        return caller.cancelled(), held_after_cancel, lock.locked()

    assert asyncio.run(scenario()) == (True, True, False)


def test_the_slot_is_released_after_the_work_and_its_answer_or_error_comes_back() -> None:
    lock = threading.Lock()

    def fail() -> None:
        raise ValueError("the PACS refused")

    async def scenario() -> tuple[str, str, bool]:
        lock.acquire()
        answer = await run_holding(pacs_threads(), lock.release, str.upper, "sent")
        lock.acquire()
        try:
            await run_holding(pacs_threads(), lock.release, fail)
        except ValueError as error:
            return answer, str(error), lock.locked()
        return answer, "", lock.locked()

    assert asyncio.run(scenario()) == ("SENT", "the PACS refused", False)
