"""Fenced endpoints: an endpoint that acts only on messages carrying its fencing token.

Flink's FencedRpcEndpoint: a leader's endpoints (ResourceManager, JobMaster, Dispatcher) are
fenced with the token of their leadership, so that a message meant for an earlier leader is
refused rather than acted on.
"""

from __future__ import annotations

from uuid import UUID

from .endpoint import RpcEndpoint
from .endpoint_host import EndpointHost
from .errors import FencingTokenError
from .protocol import show


class FencedRpcEndpoint(RpcEndpoint):
    """An endpoint that only acts on messages carrying its fencing token.

    The token is fixed for the endpoint's life: a new leader is a new endpoint with a new token.
    """

    def __init__(
        self, rpc_service: EndpointHost, fencing_token: UUID, endpoint_id: str | None = None
    ) -> None:
        self._fencing_token = fencing_token
        super().__init__(rpc_service, endpoint_id)

    @property
    def fencing_token(self) -> UUID:
        return self._fencing_token

    def _check_token(self, token: UUID | None) -> None:
        if token != self._fencing_token:
            self._rpc_service.record_fencing_rejection(self, token)
            if token is None:
                raise FencingTokenError(
                    f"endpoint {self._endpoint_id} is fenced with token {self._fencing_token} "
                    "but the message carried no token"
                )
            raise FencingTokenError(
                f"endpoint {self._endpoint_id} is fenced with token {self._fencing_token} "
                f"but the message carried {token if isinstance(token, UUID) else show(token)}"
            )


__all__ = ["FencedRpcEndpoint"]
