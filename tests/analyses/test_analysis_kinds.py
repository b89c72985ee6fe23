"""analyses/kinds.py: one registry of the analysis kinds, completing the protocol's half of each."""

from __future__ import annotations

import threading

import msgpack
import pytest

from medviz_core.analyses.compute import AnalysisSource
from medviz_core.analyses.kinds import ANALYSES, check_request, compute
from medviz_core.errors import MedvizError, RequestError
from medviz_core.types import METHODS
from medviz_core.wire.client_frames import AnalyzeRequest, BoxRequest, parse_client_frame
from medviz_core.wire.limits import ClientLimits
from medviz_core.wire.results import KINDS
from medviz_core.wire.server_frames import StartFrame, StepFrame, decode
from tests.fixtures.frames import make_fixtures

FRAMES = make_fixtures.build()


def source() -> AnalysisSource:
    start, step = decode(FRAMES["start"]), decode(FRAMES["step"])
    assert isinstance(start, StartFrame) and isinstance(step, StepFrame)
    return AnalysisSource(key="recording:fixture", start=start, steps=(step,), what="recording")


def test_every_kind_the_protocol_knows_has_one_entry_in_the_registry_in_the_protocols_order() -> None:
    assert list(KINDS) == ["gradient", "heads", "faithfulness", "agreement", "volume", "dicom"]
    assert list(ANALYSES) == list(KINDS)
    assert all(kind.name == name and kind.rules is KINDS[name] for name, kind in ANALYSES.items())


def test_the_model_computes_gradient_heads_and_faithfulness_and_the_frames_the_others() -> None:
    assert [name for name, kind in ANALYSES.items() if kind.needs_model] == ["gradient", "heads", "faithfulness"]


def test_each_kind_names_its_result_type_and_the_fields_it_takes() -> None:
    assert {name: rules.result.__name__ for name, rules in KINDS.items()} == {
        "gradient": "GradientResult", "heads": "HeadsResult", "faithfulness": "FaithfulnessResult",
        "agreement": "AgreementResult", "volume": "VolumeResult", "dicom": "DicomResult"}
    taken = {name: [f for f in ("method", "steps", "boxes") if getattr(rules, f)] for name, rules in KINDS.items()}
    assert taken == {"gradient": [], "heads": [], "faithfulness": ["method", "steps"], "agreement": ["boxes"],
                     "volume": ["method"], "dicom": ["method"]}
    assert KINDS["faithfulness"].methods == (*METHODS, "gradient")
    assert KINDS["volume"].methods == METHODS
    assert KINDS["heads"].methods == ()


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_parsed_request_keeps_only_the_fields_its_kind_takes(kind: str) -> None:
    frame = {"type": "analyze", "kind": kind, "index": 0, "method": "rollout", "steps": 9,
             "boxes": [{"label": "apex", "xywh": [1, 2, 3, 4], "image": 0}]}
    request = parse_client_frame(msgpack.packb(frame), ClientLimits())
    rules = KINDS[kind]
    assert request == AnalyzeRequest(kind, 0, method="rollout" if rules.method else "", steps=9 if rules.steps else 0,
                                     boxes=(BoxRequest("apex", (1, 2, 3, 4), 0),) if rules.boxes else ())


def test_a_kind_that_needs_the_model_where_none_is_loaded_is_a_clear_error() -> None:
    with pytest.raises(MedvizError) as error:
        compute(None, source(), AnalyzeRequest("heads", 0), threading.Event())
    assert error.value.message == "a heads analysis needs the model, and none is loaded here"


def test_a_3d_view_of_a_single_image_is_refused_by_the_volume_kinds_own_check() -> None:
    with pytest.raises(RequestError) as error:
        check_request(source(), AnalyzeRequest("volume", 0, method="consensus"))
    assert error.value.message == ("a 3D view needs one frontal (PA or AP) and one lateral image, by their labels; "
                                   "this recording's labels are ['']")
