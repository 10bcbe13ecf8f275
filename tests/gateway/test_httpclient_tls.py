"""The gateway's upstream client over HTTPS: certificate verification and keep-alive."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.httpclient import ConnectError, HttpClient


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))  # fmt: skip
    return cert_file, key_file


async def tls_server(cert: Path, key: Path) -> tuple[asyncio.Server, int, list[int]]:
    """An HTTPS server answering every POST with a small JSON body; counts connections."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")), 0,
                )  # fmt: skip
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b'content-length: 11\r\n\r\n{"ok":true}'
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    return server, server.sockets[0].getsockname()[1], connections


async def test_https_upstream_verified_and_kept_alive(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server, port, connections = await tls_server(cert, key)
    trusting = HttpClient(ssl_context=ssl.create_default_context(cafile=str(cert)))
    try:
        for _ in range(3):
            resp = await trusting.post(f"https://127.0.0.1:{port}/v1/chat/completions", b"{}", [])
            assert resp.status == 200 and await resp.aread() == b'{"ok":true}'
        assert len(connections) == 1  # one TLS handshake, then keep-alive
    finally:
        await trusting.aclose()
        server.close()


async def test_untrusted_certificate_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    server, port, _ = await tls_server(cert, key)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    default = HttpClient()  # certifi's CAs: a self-signed upstream must not be trusted
    try:
        with pytest.raises(ConnectError):
            await default.post(f"https://127.0.0.1:{port}/v1/chat/completions", b"{}", [])
    finally:
        await default.aclose()
        server.close()


async def test_ssl_cert_file_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    server, port, _ = await tls_server(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    client = HttpClient()
    try:
        resp = await client.post(f"https://127.0.0.1:{port}/v1/chat/completions", b"{}", [])
        assert resp.status == 200
        await resp.aread()
    finally:
        await client.aclose()
        server.close()
