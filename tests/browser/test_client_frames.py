"""The frames the browser sends (web/js/wire/protocol.js, web/js/wire/analysis-protocol.js),
encoded in Chromium, are read by the server's own parser
(medviz_core/wire/client_frames.py) into exactly the requests the page meant: a one-image
start, a labelled study with a prompt preset and sampling parameters, each kind of
`analyze` with its id, and `cancel_analysis` with its id."""

from __future__ import annotations

import base64
from typing import Any

from medviz_core.wire.client_frames import (
    AnalyzeRequest,
    BoxRequest,
    CancelAnalysisRequest,
    ParamsRequest,
    StartRequest,
    parse_client_frame,
)
from medviz_core.wire.limits import ClientLimits
from tests.browser.conftest import Server, Watched

ENCODE = """async () => {
  const { encodeStart } = await import('/js/wire/protocol.js');
  const { encodeAnalyze, encodeCancelAnalysis } = await import('/js/wire/analysis-protocol.js');
  const b64 = (u8) => btoa(String.fromCharCode(...u8));
  const a = new Uint8Array([1, 2, 3]);
  const b = new Uint8Array([4, 5]);
  return [
    encodeStart({ images: [a], labels: [''], question: null, params: { maxNewTokens: 24, temperature: 1 }, record: true }),
    encodeStart({ images: [a, b], labels: ['PA', 'lateral'], question: 'Effusion?', preset: 'model-card',
                  params: { maxNewTokens: 8, temperature: 0.5, topP: 0.9, topK: 40, repetitionPenalty: 1.1, seed: 7 },
                  methods: ['raw', 'consensus'], record: false }),
    encodeAnalyze({ kind: 'gradient', index: 3 }, 'g-1'),
    encodeAnalyze({ kind: 'heads', index: 0 }, 'h-2'),
    encodeAnalyze({ kind: 'faithfulness', index: 5, method: 'rollout', steps: 4 }, 'f-3'),
    encodeAnalyze({ kind: 'agreement', index: 2, boxes: [{ label: 'heart', xywh: [10.4, 20, 30.6, 40], image: 1 }] }, 'a-4'),
    encodeAnalyze({ kind: 'volume', index: 6, method: 'flow' }, 'v-5'),
    encodeAnalyze({ kind: 'dicom', index: 1, method: 'consensus' }, 'd-6'),
    encodeCancelAnalysis('gradient-3-1f0c2a9b', 'c-7'),
  ].map(b64);
}"""


def test_the_server_reads_every_request_the_browser_sends(tab: Watched, server: Server) -> None:
    tab.page.goto(server.url)
    encoded: list[str] = tab.page.evaluate(ENCODE)
    parsed: list[Any] = [parse_client_frame(base64.b64decode(e), ClientLimits()) for e in encoded]
    one, study, gradient, heads, faith, agreement, volume, dicom, cancel = parsed
    assert one == StartRequest(images=(b"\x01\x02\x03",), labels=("",), question=None, preset="medviz",
                               params=ParamsRequest(max_new_tokens=24, temperature=1.0), methods=None, record=True)
    assert study == StartRequest(images=(b"\x01\x02\x03", b"\x04\x05"), labels=("PA", "lateral"), question="Effusion?",
                                 preset="model-card",
                                 params=ParamsRequest(max_new_tokens=8, temperature=0.5, top_p=0.9, top_k=40,
                                                      repetition_penalty=1.1, seed=7),
                                 methods=("raw", "consensus"), record=False)
    assert gradient == AnalyzeRequest(kind="gradient", index=3, id="g-1")
    assert heads == AnalyzeRequest(kind="heads", index=0, id="h-2")
    assert faith == AnalyzeRequest(kind="faithfulness", index=5, method="rollout", steps=4, id="f-3")
    assert agreement == AnalyzeRequest(kind="agreement", index=2, boxes=(BoxRequest("heart", (10, 20, 31, 40), 1),), id="a-4")
    assert volume == AnalyzeRequest(kind="volume", index=6, method="flow", id="v-5")
    assert dicom == AnalyzeRequest(kind="dicom", index=1, method="consensus", id="d-6")
    assert cancel == CancelAnalysisRequest(job="gradient-3-1f0c2a9b", id="c-7")
    assert tab.errors == []
