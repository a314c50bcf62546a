"""TLS for the RPC transport: certificates from files, contexts for both sides."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field


@dataclass
class TlsConfig:
    """`cert` and `key` let a service serve TLS; `ca` is what it trusts when it connects (and,
    for a server, the clients' certificates it asks for when `require_client_cert`)."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    require_client_cert: bool = False
    _server: ssl.SSLContext | None = field(default=None, init=False, repr=False)
    _client: ssl.SSLContext | None = field(default=None, init=False, repr=False)

    def server_context(self) -> ssl.SSLContext | None:
        if self.cert is None:
            return None
        if self._server is None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert, self.key)
            if self.require_client_cert and self.ca:
                context.load_verify_locations(self.ca)
                context.verify_mode = ssl.CERT_REQUIRED
            self._server = context
        return self._server

    def client_context(self) -> ssl.SSLContext | None:
        if self.ca is None and self.cert is None:
            return None
        if self._client is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
            if self.cert is not None and self.require_client_cert:
                context.load_cert_chain(self.cert, self.key)
            self._client = context
        return self._client
