"""A small Vault HTTP fake that the real hvac client talks to.

Covers what ``VaultSecretStore`` uses: KV v2 (write, read, delete metadata, LIST)
on any mount and Transit (encrypt/decrypt with real base64 and AES-GCM) on
``transit_mount``. Every request needs ``X-Vault-Token`` equal to ``token``, else
403 like Vault. Runs a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 in a thread.
State is public (``kv``, ``requests``) so tests can check what Vault really holds.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class FakeVault:
    """In-memory Vault: KV v2 mounts keyed by mount name, one Transit mount."""

    def __init__(self, token: str = "root-token", transit_mount: str = "transit") -> None:  # noqa: S107
        self.token = token
        self.transit_mount = transit_mount
        self.kv: dict[str, dict[str, list[dict[str, Any]]]] = {}  # mount -> path -> versions
        self.transit_keys: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, bytes]] = []  # (method, path, raw body)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeVault:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeVault:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stored_values(self) -> list[Any]:
        """Every value in every KV version, for 'no plaintext at rest' assertions."""
        with self._lock:
            return [v["data"] for paths in self.kv.values() for vs in paths.values() for v in vs]

    # -- request handling: return (status, body or None) ---------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Route one authenticated request."""
        parts = path.removeprefix("/v1/").split("/")
        mount, kind, rest = parts[0], parts[1] if len(parts) > 1 else "", "/".join(parts[2:])
        with self._lock:
            if mount == self.transit_mount:
                return self._transit(kind, rest, body)
            if kind == "data" and method in ("POST", "PUT"):
                return self._kv_write(mount, rest, body)
            if kind == "data" and method == "GET":
                return self._kv_read(mount, rest)
            if kind == "metadata" and method == "DELETE":
                self.kv.get(mount, {}).pop(rest, None)
                return 204, None
            if kind == "metadata" and method == "LIST":
                return self._kv_list(mount, rest)
        return 404, {"errors": [f"no handler for route {path}"]}

    def _kv_write(self, mount: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if not isinstance(body.get("data"), dict):
            return 400, {"errors": ["no data provided"]}
        versions = self.kv.setdefault(mount, {}).setdefault(path, [])
        versions.append({"data": body["data"]})
        return 200, {"data": {"version": len(versions), "destroyed": False, "deletion_time": ""}}

    def _kv_read(self, mount: str, path: str) -> tuple[int, Any]:
        versions = self.kv.get(mount, {}).get(path)
        if not versions:
            return 404, {"errors": []}
        metadata = {"version": len(versions), "destroyed": False, "deletion_time": ""}
        return 200, {"data": {"data": versions[-1]["data"], "metadata": metadata}}

    def _kv_list(self, mount: str, folder: str) -> tuple[int, Any]:
        prefix = folder.rstrip("/") + "/" if folder else ""
        keys = set()
        for path in self.kv.get(mount, {}):
            if path.startswith(prefix):
                head, sep, _ = path[len(prefix) :].partition("/")
                keys.add(head + sep)
        if not keys:
            return 404, {"errors": []}
        return 200, {"data": {"keys": sorted(keys)}}

    def _transit(self, kind: str, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        if kind == "encrypt":
            try:
                plaintext = base64.b64decode(body.get("plaintext", ""), validate=True)
            except binascii.Error:
                return 400, {"errors": ["failed to base64-decode plaintext"]}
            # Like Vault, encrypting with a missing key creates it.
            key = self.transit_keys.setdefault(name, AESGCM.generate_key(bit_length=256))
            nonce = os.urandom(12)
            sealed = base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext, None))
            return 200, {"data": {"ciphertext": "vault:v1:" + sealed.decode(), "key_version": 1}}
        if kind == "decrypt":
            key = self.transit_keys.get(name)
            ciphertext = str(body.get("ciphertext", ""))
            if key is None or not ciphertext.startswith("vault:v1:"):
                return 400, {"errors": ["invalid ciphertext: no prefix"]}
            try:
                raw = base64.b64decode(ciphertext.removeprefix("vault:v1:"), validate=True)
                plaintext = AESGCM(key).decrypt(raw[:12], raw[12:], None)
            except (binascii.Error, InvalidTag, ValueError):
                return 400, {"errors": ["cipher: message authentication failed"]}
            return 200, {"data": {"plaintext": base64.b64encode(plaintext).decode()}}
        return 404, {"errors": [f"unsupported transit path {kind}"]}


def _handler_for(vault: FakeVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:  # keep test output quiet
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            method = "LIST" if "list=true" in split.query else self.command
            vault.requests.append((method, split.path, raw))
            if self.headers.get("X-Vault-Token") != vault.token:
                status, body = 403, {"errors": ["permission denied"]}
            else:
                try:
                    payload = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    payload = None
                if not isinstance(payload, dict):
                    status, body = 400, {"errors": ["failed to parse JSON input"]}
                else:
                    status, body = vault.handle(method, split.path, payload)
            self._reply(status, body)

        def _reply(self, status: int, body: Any) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_LIST = _serve

    return Handler
