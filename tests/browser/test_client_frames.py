"""The frames the browser sends (web/js/protocol.js, web/js/analysis-protocol.js),
encoded in Chromium, are read by the server's own parser (server/requests.py) into
exactly the requests the page meant: a one-image start, a labelled study, each kind of
`analyze` and `cancel_analysis`."""

from __future__ import annotations

import base64
from typing import Any

from medviz_core.wire.client_frames import (
    AnalyzeRequest,
    BoxRequest,
    CancelAnalysisRequest,
    StartRequest,
    parse_client_frame,
)
from medviz_core.wire.limits import ClientLimits

from .conftest import Server, Watched

ENCODE = """async () => {
  const { encodeStart } = await import('/js/protocol.js');
  const { encodeAnalyze, encodeCancelAnalysis } = await import('/js/analysis-protocol.js');
  const b64 = (u8) => btoa(String.fromCharCode(...u8));
  const a = new Uint8Array([1, 2, 3]);
  const b = new Uint8Array([4, 5]);
  const base = { question: null, maxNewTokens: 24, temperature: 1, record: true };
  return [
    encodeStart({ images: [a], labels: [''], ...base }),
    encodeStart({ images: [a, b], labels: ['PA', 'lateral'], ...base, question: 'Effusion?' }),
    encodeAnalyze({ kind: 'gradient', index: 3 }),
    encodeAnalyze({ kind: 'heads', index: 0 }),
    encodeAnalyze({ kind: 'faithfulness', index: 5, method: 'rollout', steps: 4 }),
    encodeAnalyze({ kind: 'agreement', index: 2, boxes: [{ label: 'heart', xywh: [10.4, 20, 30.6, 40], image: 1 }] }),
    encodeCancelAnalysis('gradient-3-1f0c2a9b'),
  ].map(b64);
}"""


def test_the_server_reads_every_request_the_browser_sends(tab: Watched, server: Server) -> None:
    tab.page.goto(server.url)
    encoded: list[str] = tab.page.evaluate(ENCODE)
    parsed: list[Any] = [parse_client_frame(base64.b64decode(e), ClientLimits()) for e in encoded]
    one, study, gradient, heads, faith, agreement, cancel = parsed
    assert isinstance(one, StartRequest) and isinstance(study, StartRequest)
    assert (one.images, one.labels, one.max_new_tokens, one.temperature, one.record) == ((b"\x01\x02\x03",), (), 24, 1.0, True)
    assert (study.images, study.labels, study.question) == ((b"\x01\x02\x03", b"\x04\x05"), ("PA", "lateral"), "Effusion?")
    assert gradient == AnalyzeRequest(kind="gradient", index=3)
    assert heads == AnalyzeRequest(kind="heads", index=0)
    assert faith == AnalyzeRequest(kind="faithfulness", index=5, method="rollout", steps=4)
    assert agreement == AnalyzeRequest(kind="agreement", index=2, boxes=(BoxRequest("heart", (10, 20, 31, 40), 1),))
    assert cancel == CancelAnalysisRequest(job="gradient-3-1f0c2a9b")
    assert tab.errors == []
