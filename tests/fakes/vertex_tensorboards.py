"""The emulator's TensorBoard instances: `google.cloud.aiplatform.v1.TensorboardService`
(CreateTensorboard, GetTensorboard, ListTensorboards) and `google.longrunning.Operations`
(GetOperation) for the long-running create.

As on Vertex, CreateTensorboard answers with an Operation that is not done yet; the official
client polls GetOperation, which reports it done with the Tensorboard packed as its response.
ListTensorboards filters on display_name (XManager writes it displayName), name, labels and
times, in pages.
"""

from __future__ import annotations

import datetime
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from google.cloud import aiplatform_v1 as aip
from google.longrunning import operations_pb2

from tests.fakes import cloud_logging, filters, vertex_checks

SERVICE = "google.cloud.aiplatform.v1.TensorboardService"
OPERATIONS = "google.longrunning.Operations"
LIST_FIELDS = ("display_name", "displayName", "name", "create_time", "update_time")


def _record(board: Any) -> dict[str, str]:
    record = {
        "name": board.name,
        "display_name": board.display_name,
        "displayName": board.display_name,
        "create_time": cloud_logging.rfc3339(board.create_time),
        "update_time": cloud_logging.rfc3339(board.update_time),
    }
    record.update({f"labels.{key}": value for key, value in board.labels.items()})
    return record


class TensorboardService:
    """TensorBoard instances and the operations creating them; `before_call` injects faults."""

    def __init__(self, before_call: Callable[[str, Any], None]) -> None:
        self._before_call = before_call
        self._lock = threading.Lock()
        self._boards: dict[str, Any] = {}
        self._operations: dict[str, operations_pb2.Operation] = {}
        self._ids = itertools.count(int(time.time()) * 1000)

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._boards

    def tensorboards(self) -> list[aip.Tensorboard]:
        with self._lock:
            return [aip.Tensorboard(board) for board in self._boards.values()]

    def create_tensorboard(
        self, request: aip.CreateTensorboardRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        self._before_call("CreateTensorboard", context)
        problem = vertex_checks.check_tensorboard(request.parent, request.tensorboard)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        now = datetime.datetime.now(datetime.UTC)
        name = f"{request.parent}/tensorboards/{next(self._ids)}"
        board: Any = aip.Tensorboard(request.tensorboard)
        board.name = name
        board.create_time = now
        board.update_time = now
        board.etag = uuid.uuid4().hex
        board.blob_storage_path_prefix = f"cloud-ai-platform-{uuid.uuid4()}"
        metadata = aip.CreateTensorboardOperationMetadata(
            generic_metadata=aip.GenericOperationMetadata(create_time=now, update_time=now)
        )
        operation = operations_pb2.Operation(name=f"{name}/operations/{next(self._ids)}")
        operation.metadata.Pack(aip.CreateTensorboardOperationMetadata.pb(metadata))
        with self._lock:
            self._boards[name] = board
            self._operations[operation.name] = operation
        pending = operations_pb2.Operation()
        pending.CopyFrom(operation)
        return pending

    def get_operation(
        self, request: operations_pb2.GetOperationRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        self._before_call("GetOperation", context)
        if not vertex_checks.OPERATION_NAME.fullmatch(request.name):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"name: {request.name!r} is not projects/P/locations/L/RESOURCES/ID/operations/ID",
            )
        with self._lock:
            operation = self._operations.get(request.name)
            if operation is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Operation {request.name} not found")
            if not operation.done:  # the instance was created with the request: done now
                board = self._boards[request.name.rsplit("/operations/", 1)[0]]
                operation.response.Pack(aip.Tensorboard.pb(board))
                operation.done = True
            answer = operations_pb2.Operation()
            answer.CopyFrom(operation)
        return answer

    def get_tensorboard(
        self, request: aip.GetTensorboardRequest, context: grpc.ServicerContext
    ) -> aip.Tensorboard:
        self._before_call("GetTensorboard", context)
        if not vertex_checks.TENSORBOARD_NAME.fullmatch(request.name):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"name: {request.name!r} is not projects/P/locations/L/tensorboards/ID",
            )
        with self._lock:
            board = self._boards.get(request.name)
            if board is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Tensorboard {request.name} not found")
            return aip.Tensorboard(board)

    def list_tensorboards(
        self, request: aip.ListTensorboardsRequest, context: grpc.ServicerContext
    ) -> aip.ListTensorboardsResponse:
        self._before_call("ListTensorboards", context)
        try:
            parsed = vertex_checks.list_filter(request.parent, request.filter, LIST_FIELDS)
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if request.order_by:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "order_by is not supported here")
        prefix = request.parent + "/tensorboards/"
        with self._lock:
            found = [
                aip.Tensorboard(board)
                for name, board in self._boards.items()
                if name.startswith(prefix) and filters.matches(parsed, _record(board))
            ]
        try:
            page, next_token = vertex_checks.page_of(found, request.page_size, request.page_token)
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return aip.ListTensorboardsResponse(tensorboards=page, next_page_token=next_token)

    def handlers(self) -> list[grpc.GenericRpcHandler[Any, Any]]:
        def unary(method: Any, request_type: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                method,
                request_deserializer=request_type.deserialize,
                response_serializer=lambda message: type(message).serialize(message),
            )

        def unary_pb(method: Any, request_type: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                method,
                request_deserializer=request_type.FromString,
                response_serializer=operations_pb2.Operation.SerializeToString,
            )

        return [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "CreateTensorboard": grpc.unary_unary_rpc_method_handler(
                        self.create_tensorboard,
                        request_deserializer=aip.CreateTensorboardRequest.deserialize,
                        response_serializer=operations_pb2.Operation.SerializeToString,
                    ),
                    "GetTensorboard": unary(self.get_tensorboard, aip.GetTensorboardRequest),
                    "ListTensorboards": unary(self.list_tensorboards, aip.ListTensorboardsRequest),
                },
            ),
            grpc.method_handlers_generic_handler(
                OPERATIONS,
                {"GetOperation": unary_pb(self.get_operation, operations_pb2.GetOperationRequest)},
            ),
        ]
