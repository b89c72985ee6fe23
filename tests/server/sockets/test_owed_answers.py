"""The rule of owed analysis answers, driven directly: no uvicorn, no event loop (server/sockets/owed_answers.py)."""

from __future__ import annotations

from medviz_core.errors import BusyError
from medviz_core.wire import server_frames as frames
from medviz_core.wire.results import AnalysisFrame
from medviz_core.wire.server_frames import ErrorFrame
from server.sockets.owed_answers import Answer, OwedAnswers, refusal

JOB = "gradient-1-x"
SOURCE = "session:s"


def state(status: str, job: str = JOB) -> AnalysisFrame:
    return AnalysisFrame(job, "gradient", 1, status)


def heard(answers: list[Answer]) -> list[tuple[str | None, str, bool]]:
    """Each answer as (the id it carries, its status, whether final)."""
    out = []
    for answer in answers:
        frame = frames.decode(answer.data)
        assert isinstance(frame, AnalysisFrame) and frame.job == answer.job
        out.append((frame.id, frame.status, answer.final))
    return out


def test_one_request_gets_each_state_and_one_final_answer_carrying_its_id() -> None:
    owed = OwedAnswers()
    owed.asked(SOURCE, JOB, "a")
    sent = owed.arrived(state("queued"), False) + owed.arrived(state("running"), False)
    sent += owed.arrived(state("done"), True)
    assert heard(sent) == [("a", "queued", False), ("a", "running", False), ("a", "done", True)]


def test_a_job_asked_twice_sends_its_states_to_both_ids_and_one_final_answer_to_each_oldest_first() -> None:
    owed = OwedAnswers()
    owed.asked(SOURCE, JOB, "a")
    first = owed.arrived(state("queued"), False)
    owed.asked(SOURCE, JOB, "b")
    later = owed.arrived(state("running"), False) + owed.arrived(state("done"), True) + owed.arrived(state("done"), True)
    assert heard(first) == [("a", "queued", False)]
    assert heard(later) == [("a", "running", False), ("b", "running", False), ("a", "done", True),
                            ("b", "done", True)]


def test_a_final_answer_past_the_requests_owed_is_not_sent() -> None:
    owed = OwedAnswers()
    owed.asked(SOURCE, JOB, "a")
    assert len(owed.arrived(state("done"), True)) == 1
    assert owed.arrived(state("done"), True) == []
    assert owed.arrived(state("running"), False) == []


def test_a_refused_request_owes_nothing() -> None:
    owed = OwedAnswers()
    owed.asked(SOURCE, JOB, "a")
    owed.refused(JOB)
    assert owed.idle and owed.jobs == {}
    assert owed.arrived(state("done"), True) == []


def test_a_refused_repeat_leaves_the_first_request_owed_its_answer() -> None:
    owed = OwedAnswers()
    owed.asked(SOURCE, JOB, "a")
    owed.asked(SOURCE, JOB, "b")
    owed.refused(JOB)
    assert not owed.idle
    assert heard(owed.arrived(state("done"), True)) == [("a", "done", True)]
    assert owed.arrived(state("done"), True) == []


def test_a_refusal_is_an_error_frame_with_the_refused_requests_id_and_no_job() -> None:
    answer = refusal(BusyError("the worker is full"), "r7")
    assert (answer.final, answer.job) == (False, "")
    assert frames.decode(answer.data) == ErrorFrame("busy", "the worker is full", "r7")


def test_a_job_cancelled_by_its_asker_ends_each_of_its_requests_with_a_cancelled_final_answer() -> None:
    owed = OwedAnswers()
    owed.asked(SOURCE, JOB, "a")
    owed.asked(SOURCE, JOB, "b")
    cancelled = state("cancelled")
    sent = owed.arrived(cancelled, True) + owed.arrived(cancelled, True)
    assert heard(sent) == [("a", "cancelled", True), ("b", "cancelled", True)]
    for answer in sent:
        owed.sent(answer.job)
    assert owed.idle


def test_a_closing_socket_withdraws_every_job_it_still_waits_for_and_then_owes_nothing() -> None:
    owed = OwedAnswers()
    owed.asked(SOURCE, JOB, "a")
    owed.asked("recording:r", "heads-2-y", "b")
    assert owed.withdraw() == [(SOURCE, JOB), ("recording:r", "heads-2-y")]
    assert owed.idle and owed.withdraw() == []
    assert owed.arrived(state("done"), True) == []


def test_a_socket_is_idle_only_once_nothing_is_owed_and_every_final_answer_went_out() -> None:
    owed = OwedAnswers()
    assert owed.idle
    owed.asked(SOURCE, JOB, "a")
    owed.asked(SOURCE, JOB, "b")
    owed.arrived(state("done"), True)
    owed.sent(JOB)
    assert not owed.idle  # "b" still waits
    owed.arrived(state("done"), True)
    assert not owed.idle  # its final answer is not out yet
    owed.sent(JOB)
    assert owed.idle and owed.jobs == {}


def test_answers_for_a_job_this_socket_never_asked_for_are_not_sent() -> None:
    owed = OwedAnswers()
    owed.asked(SOURCE, JOB, "a")
    assert owed.arrived(state("done", job="heads-2-y"), True) == []
    assert [job for job in owed.jobs] == [JOB]
