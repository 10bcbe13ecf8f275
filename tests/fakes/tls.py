"""A throwaway CA and a TLS HTTP server for one host name, to test pinned https calls.

``TlsServer("provider.internal")`` listens on 127.0.0.1 with a certificate for that
name only, records the SNI each handshake asked for, and answers every request with
a small OpenAI-style JSON body. ``client_context()`` trusts its CA.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ssl
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey


def _cert(name: str, key: Key, issuer: x509.Name, signer: Key, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


class TlsServer:
    """An https server on 127.0.0.1 whose certificate names only ``hostname``."""

    def __init__(self, hostname: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tcc-tls-"))
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tcc test CA")])
        ca = _cert("tcc test CA", ca_key, ca_name, ca_key, ca=True)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _cert(hostname, key, ca_name, ca_key, ca=False)
        self.ca_file = self.dir / "ca.pem"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (self.dir / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (self.dir / "leaf.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.sni: list[str | None] = []
        self.requests: list[tuple[str, str]] = []  # (method, path)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(self.dir / "leaf.pem", self.dir / "leaf.key")
        server_ctx.sni_callback = lambda sock, name, ctx: self.sni.append(name)  # type: ignore[assignment,misc]
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                outer.requests.append((self.command, self.path))
                body = (
                    b'{"object": "list", "data": [{"id": "tls-model"}], "choices": [{"index": 0,'
                    b' "message": {"role": "assistant", "content": "over tls"}}],'
                    b' "usage": {"prompt_tokens": 1, "completion_tokens": 2}}'
                )
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = server_ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> TlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this server's CA only."""
        return ssl.create_default_context(cafile=str(self.ca_file))
