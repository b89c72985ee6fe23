"""The analysis answers one socket still owes its client: the rule, with no I/O.

Owns: `OwedAnswers`, the one record of a socket's analysis requests and their answers, used
by live sockets and watchers (sockets/live.py's `Outbox`) and by replays (sockets/replay.py) alike. Every
request is owed exactly one final answer, and every answer carries the `id` of the request
it answers: a job asked twice by one socket (two ids) sends its states to both and one final
answer to each, oldest request first. A refused request owes nothing. A socket is idle when
nothing is owed and every final answer it was given has gone out. Methods take what happened
(asked, refused, a job's state arrived, a final answer sent, the socket closing) and return
the frames to send (`Answer`: bytes, whether final, its job) or the jobs to withdraw; no
asyncio, no sockets (tests/server/sockets/test_owed_answers.py drives it directly). Does not own the
jobs (analysis_jobs.py) or sending (sockets/live.py, sockets/replay.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from medviz_core.errors import MedvizError
from medviz_core.wire.results import AnalysisFrame
from medviz_core.wire.server_frames import ErrorFrame

__all__ = ["Answer", "OwedAnswers", "refusal"]


class Answer(NamedTuple):
    """One frame for the socket: its bytes, whether it is a request's final answer, and its job ("" for a refusal)."""

    data: bytes
    final: bool
    job: str


def refusal(error: MedvizError, request_id: str | None = None) -> Answer:
    """The error frame that answers a refused command (it owes nothing more)."""
    return Answer(ErrorFrame(error.code, error.message, request_id).to_wire(), False, "")


@dataclass
class Owed:
    """What one job still owes the socket."""

    source_key: str
    ids: list[str | None] = field(default_factory=list)  # requests still waiting for their final answer, oldest first
    unsent: int = 0  # final answers given to the socket to send, not yet sent


class OwedAnswers:
    """One socket's owed analysis answers, by job."""

    def __init__(self) -> None:
        self.jobs: dict[str, Owed] = {}

    @property
    def idle(self) -> bool:
        """Nothing is owed and every final answer went out."""
        return not self.jobs

    def asked(self, source_key: str, job: str, request_id: str | None) -> None:
        """The socket asked `source_key` for `job` with request `request_id`: one final answer is owed to it."""
        self.jobs.setdefault(job, Owed(source_key)).ids.append(request_id)

    def refused(self, job: str) -> None:
        """The request just made for `job` was refused: it owes nothing."""
        owed = self.jobs.get(job)
        if owed is not None and owed.ids:
            owed.ids.pop()
            self._settle(job, owed)

    def arrived(self, frame: AnalysisFrame, final: bool) -> list[Answer]:
        """A state of `frame.job`: to every request still waiting for it, or a final one to the oldest only.
        Nothing for a job this socket is not owed (it withdrew, or never asked)."""
        owed = self.jobs.get(frame.job)
        if owed is None or not owed.ids:
            return []
        if not final:
            return [Answer(frame.with_id(request_id).to_wire(), False, frame.job) for request_id in owed.ids]
        owed.unsent += 1
        return [Answer(frame.with_id(owed.ids.pop(0)).to_wire(), True, frame.job)]

    def sent(self, job: str) -> None:
        """A final answer for `job` went out to the socket."""
        owed = self.jobs.get(job)
        if owed is not None:
            owed.unsent -= 1
            self._settle(job, owed)

    def withdraw(self) -> list[tuple[str, str]]:
        """The socket is closing: the (source key, job) pairs it still waited for; it owes nothing after."""
        waited = [(owed.source_key, job) for job, owed in self.jobs.items()]
        self.jobs.clear()
        return waited

    def _settle(self, job: str, owed: Owed) -> None:
        if not owed.ids and owed.unsent <= 0:
            del self.jobs[job]
