"""The total deadline holds while an https:// PACS trickles its TLS handshake: a loopback TLS server (a self-signed
certificate made with `cryptography`) that sends its handshake a byte at a time, each byte well within the connect
timeout, is cut off at total_timeout_s (deadline.py keeps its own duplicate of the socket's descriptor, which
ssl.wrap_socket does not detach). The server listens on 127.0.0.1 only and stops after the test."""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.pacs.client import PacsClient, StudyQuery
from server.pacs.config import PacsConfig
from server.pacs.errors import PacsTimeout

BYTE_GAP_S = 0.05  # a handshake of about 500 bytes takes some 25 s at this pace


def tls_context(folder: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


@pytest.fixture
def trickling_tls(tmp_path: Path) -> Iterator[str]:
    """The https:// address of a server that answers one connection's TLS handshake a byte at a time."""
    context = tls_context(tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    stop = threading.Event()

    def serve() -> None:
        with listener:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
        with connection:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = context.wrap_bio(incoming, outgoing, server_side=True)
            connection.settimeout(0.05)
            try:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        data = connection.recv(65536)
                        if not data:
                            return
                        incoming.write(data)
                    with contextlib.suppress(ssl.SSLWantReadError):
                        tls.do_handshake()
                    pending = outgoing.read()
                    for at in range(len(pending)):
                        if stop.is_set():
                            return
                        connection.sendall(pending[at:at + 1])
                        time.sleep(BYTE_GAP_S)
            except (OSError, ssl.SSLError):  # the client shut the connection down: what the test waits for
                return

    address = f"https://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield address
    stop.set()
    thread.join(5)


def test_a_pacs_that_trickles_its_tls_handshake_stops_at_the_total_timeout(trickling_tls: str) -> None:
    began = time.monotonic()
    config = PacsConfig(trickling_tls, connect_timeout_s=60, read_timeout_s=60, total_timeout_s=1)
    with PacsClient(config) as client, pytest.raises(PacsTimeout) as error:
        client.find_studies(StudyQuery(patient_id="X"))
    assert 1 <= time.monotonic() - began < 5  # the handshake alone would take some 25 s
    assert error.value.message == (f"the PACS at {trickling_tls} took longer than 1 s for a study search "
                                   "(total_timeout_s)")
