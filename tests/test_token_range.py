"""types.token_range: the one reading of a token range that `medviz faithfulness --tokens` and `medviz video
--token-range` share; each command words its own message from TokenRangeError.outside."""

from __future__ import annotations

import pytest

from medviz_core.types import TokenRangeError, token_range


@pytest.mark.parametrize(("spec", "picked"), [("1:2", range(1, 3)), (":1", range(0, 2)), ("3:", range(3, 5)),
                                              ("4", range(4, 5)), (" 2 : 3 ", range(2, 4))])
def test_a_range_includes_both_ends_and_an_open_side_reaches_the_first_or_last_token(spec: str, picked: range) -> None:
    assert token_range(spec, 5) == picked


@pytest.mark.parametrize(("spec", "outside"), [("2:9", True), ("3:1", True), ("-1", True), ("a:b", False),
                                               (":", False), ("", False), ("5 6", False), ("1:2:3", False)])
def test_a_range_outside_the_tokens_is_told_apart_from_one_that_cannot_be_read(spec: str, outside: bool) -> None:
    with pytest.raises(TokenRangeError) as refused:
        token_range(spec, 5)
    assert refused.value.outside is outside
