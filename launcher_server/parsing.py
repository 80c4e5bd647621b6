"""Registers the service with request parsing that never fails inside gRPC.

gRPC answers a request it cannot parse (bad wire format, invalid UTF-8 in a string) with
INTERNAL, and on a client stream it ends the request iterator in a way that can leave the
handler waiting. Here parsing hands such a message to the handler as `Unparsable`, and the
handler answers INVALID_ARGUMENT like any other bad request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import message as _message

from launcher_server.errors import InvalidArgumentError
from xmanager.launcher.v1 import launcher_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Launcher"]


@dataclasses.dataclass(frozen=True)
class Unparsable:
    """A request message that did not parse, and why."""

    type_name: str
    problem: str

    def error(self, field: str = "request") -> InvalidArgumentError:
        return InvalidArgumentError(
            field, f"is not a valid {self.type_name} message ({self.problem}); fix the client"
        )


def check(request: object, field: str = "request") -> None:
    """Raises INVALID_ARGUMENT for a request that did not parse."""
    if isinstance(request, Unparsable):
        raise request.error(field)


def _tolerant(message_class: type[_message.Message]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> _message.Message | Unparsable:
        try:
            return message_class.FromString(data)
        except Exception as error:  # DecodeError, or a UTF-8 error from the C parser
            return Unparsable(
                message_class.DESCRIPTOR.full_name, str(error) or type(error).__name__
            )

    return parse


def add_to_server(servicer: object, server: grpc.Server) -> None:
    """Like the generated add_LauncherServicer_to_server, with tolerant request parsing."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in SERVICE.methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        kind = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=_tolerant(request_class),
            response_serializer=response_class.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),)
    )
