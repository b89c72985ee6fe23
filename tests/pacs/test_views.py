"""choose_views: image instances only, single-frame, one to four, frontal first, labelled from ViewPosition."""

from __future__ import annotations

import pytest

from server.pacs.client import InstanceMatch
from server.pacs.errors import PacsNoImages, PacsQueryError
from server.pacs.views import PacsView, choose_views

DX = "1.2.840.10008.5.1.4.1.1.1.1"
SR = "1.2.840.10008.5.1.4.1.1.88.22"


def instance(sop: str, view: str = "", number: int | None = None, sop_class: str = DX, frames: int = 1,
             series: str = "1.1") -> InstanceMatch:
    return InstanceMatch(series, sop, sop_class, number, view, frames, 1024, 1024)


def test_frontal_views_come_first_and_are_labelled_from_view_position() -> None:
    found = [instance("9.3", "LL", 1), instance("9.1", "", 2, series="1.2"), instance("9.2", "PA", 3),
             instance("9.4", "", 4, sop_class=SR)]
    views = choose_views(found, study_uid="1.9", descriptions={"1.2": "Prior chest"})
    assert views == (PacsView("1.9", "1.1", "9.2", "PA"), PacsView("1.9", "1.1", "9.3", "lateral"),
                     PacsView("1.9", "1.2", "9.1", "Prior chest"))


def test_at_most_four_views_are_chosen_and_a_wanted_list_keeps_its_order() -> None:
    found = [instance(f"9.{n}", "AP", n) for n in range(1, 7)]
    assert [v.sop_uid for v in choose_views(found)] == ["9.1", "9.2", "9.3", "9.4"]
    assert [(v.sop_uid, v.label) for v in choose_views(found, ["9.6", "9.2"])] == [("9.6", "AP"), ("9.2", "AP")]


def test_a_wanted_instance_that_is_not_an_image_or_not_listed_is_refused() -> None:
    found = [instance("9.1", "PA"), instance("9.2", sop_class=SR), instance("9.3", frames=3)]
    with pytest.raises(PacsNoImages) as report:
        choose_views(found, ["9.2"], study_uid="1.9")
    with pytest.raises(PacsNoImages) as cine:
        choose_views(found, ["9.3"], study_uid="1.9")
    with pytest.raises(PacsQueryError) as absent:
        choose_views(found, ["9.7"], study_uid="1.9")
    assert report.value.message == "instance 9.2 of study 1.9 is not an image (SR), which medviz does not read"
    assert cine.value.message == "instance 9.3 of study 1.9 is a multi-frame image, which medviz does not read"
    assert absent.value.message == "study 1.9 holds no instance 9.7"


def test_medviz_own_results_are_not_chosen_by_default() -> None:
    found = [instance("9.1", series="1.5")]
    with pytest.raises(PacsNoImages) as error:
        choose_views(found, study_uid="1.9", descriptions={"1.5": "medviz overlay: token 3 (consensus)"})
    assert error.value.message == "study 1.9 holds only medviz's own results; choose an image to open by hand"
