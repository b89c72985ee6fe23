"""An owner who sends after the live session is gone (linger_s after its end) is told the session has ended and to
send from its recording, not that only the owner may send."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from medviz_core.wire.client_frames import PacsPick
from server.pacs_routes import SESSION_ENDED
from tests.pacs.conftest import PacsStudy
from tests.server.helpers import LiveServer, run, until
from tests.server.pacs.conftest import OPERATOR
from tests.server.pacs.test_pacs_start import owned_session


def test_an_owner_sending_after_the_session_is_gone_is_told_to_send_from_its_recording(
        pacs_server: Callable[..., LiveServer], stored_study: Callable[..., PacsStudy]) -> None:
    study = stored_study("P3-ENDED", "ACC-P3-ENDED")
    server = pacs_server(linger_s=0)
    owner, _ = owned_session(server, PacsPick(study=study.study_uid, instances=(study.sop_uid,)), record=True)
    run(until(lambda: not server.app.state.sessions.sessions(), "the session is gone"))
    answer = httpx.post(f"{server.http}/api/pacs/send", headers=OPERATOR, timeout=60,
                        json={"session": owner.session, "key": owner.key, "index": 0, "method": "consensus"})
    assert (answer.status_code, answer.json()["error"]["message"]) == (400, SESSION_ENDED)
    assert SESSION_ENDED == ("this session has ended and is no longer kept live: send from its recording instead "
                             "(the library's replay of it)")
