"""A TLS front for the test server (whose PostgreSQL build has no TLS): the real protocol's TLS, real libpq.

The proxy speaks PostgreSQL's own TLS negotiation — it answers the client's SSLRequest with 'S' and does the
TLS handshake with a certificate made by `openssl` — then relays the decrypted stream to the real server.
It counts how each client connected (TLS or plain), which is what the TLS tests check.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def make_certificate(directory: Path, name: str, san: str) -> tuple[Path, Path]:
    """A self-signed certificate (its own root) for `san` (e.g. IP:127.0.0.1) and its key."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}"]
    extensions = ["-addext", f"subjectAltName={san}", "-addext", "basicConstraints=critical,CA:TRUE"]
    subprocess.run(
        [*request, *extensions, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@dataclass
class TlsProxy:
    """Listens on 127.0.0.1:`port` (set by `start`), relays to `backend`; TLS with `cert`/`key` when asked."""

    backend: tuple[str, int]
    cert: Path
    key: Path
    tls_connections: int = 0
    plain_connections: int = 0
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> int:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(self.cert, self.key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        self.port = int(self._listener.getsockname()[1])
        return self.port

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(30)
            head = _read(client, 8)
            length, code = struct.unpack("!ii", head)
            if length == 8 and code == GSSENC_REQUEST:
                client.sendall(b"N")
                head = _read(client, 8)
                length, code = struct.unpack("!ii", head)
            stream: socket.socket = client
            if length == 8 and code == SSL_REQUEST:
                client.sendall(b"S")
                stream = self._context.wrap_socket(client, server_side=True)
                head = b""
                with self._lock:
                    self.tls_connections += 1
            else:
                with self._lock:
                    self.plain_connections += 1
            with socket.create_connection(self.backend, timeout=30) as server:
                server.sendall(head)
                _relay(stream, server)
        except (OSError, ssl.SSLError, struct.error):
            pass  # the client went away or failed the handshake (a verification test)
        finally:
            client.close()


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def _relay(client: socket.socket, server: socket.socket) -> None:
    """Copy bytes both ways until one side closes (one thread: an SSL socket is not shared between threads)."""
    while True:
        ready: list[socket.socket]
        if isinstance(client, ssl.SSLSocket) and client.pending():
            ready = [client]
        else:
            ready, _, _ = select.select([client, server], [], [], 1.0)
        for sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            (server if sock is client else client).sendall(data)
