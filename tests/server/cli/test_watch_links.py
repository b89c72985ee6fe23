"""client.socket_url: `medviz watch` takes the link the page's Share button copies (http or https,
?watch= or ?replay=, the token kept) or a websocket URL, and says what a link looks like otherwise."""

from __future__ import annotations

import pytest

from medviz_core.errors import MedvizError
from server.cli.watch import socket_url


@pytest.mark.parametrize(("link", "socket"), [
    ("http://127.0.0.1:7860/?watch=AbC-9_x", "ws://127.0.0.1:7860/ws/watch/AbC-9_x"),
    ("https://demo.example/?token=s3cr%2Bt&watch=AbC", "wss://demo.example/ws/watch/AbC?token=s3cr%2Bt"),
    ("http://h:1/medviz/?token=T&replay=rec_1", "ws://h:1/medviz/ws/replay/rec_1?token=T&speed=8"),
    ("  http://h/index.html?watch=A  ", "ws://h/ws/watch/A"),
    ("ws://127.0.0.1:7860/ws/watch/AbC?token=T", "ws://127.0.0.1:7860/ws/watch/AbC?token=T"),
    ("wss://h/ws/watch/AbC", "wss://h/ws/watch/AbC"),
    ("http://h/ws/watch/AbC?token=T", "ws://h/ws/watch/AbC?token=T"),
])
def test_the_share_link_and_socket_urls_give_the_socket_to_follow(link: str, socket: str) -> None:
    assert socket_url(link) == socket


def test_a_link_that_names_nothing_to_watch_is_refused_without_its_token() -> None:
    with pytest.raises(MedvizError, match=r"^the page link names no session: it needs \?watch=ID .*; got "
                                          r"'http://h/'$"):
        socket_url("http://h/?token=secret")
    with pytest.raises(MedvizError, match=r"^a link to watch is http\(s\)://HOST/\?watch=ID .*; got 'ftp://h/x'$"):
        socket_url("ftp://h/x?token=secret")
