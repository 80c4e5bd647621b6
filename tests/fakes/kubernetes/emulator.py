"""The whole emulated control plane: store, controllers and API server, started together."""

from __future__ import annotations

import kubernetes_validate

from tests.fakes.kubernetes.controller import Controllers
from tests.fakes.kubernetes.server import ApiServer
from tests.fakes.kubernetes.store import ApiError, Obj, Store

SCHEMA_VERSION = kubernetes_validate.latest_version()


def validate(obj: Obj) -> None:
    """Refuses what the real API server would refuse by schema, as 422 Invalid."""
    try:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        kind = obj.get("kind", "object")
        name = obj.get("metadata", {}).get("name", "")
        path = ".".join(str(p) for p in error.path)
        raise ApiError(
            422, "Invalid", f'{kind} "{name}" is invalid: {path}: {error.message}'
        ) from None


class Emulator:
    def __init__(self, port: int = 0, *, validate_objects: bool = True) -> None:
        self.store = Store(validate=validate if validate_objects else None)
        self.controllers = Controllers(self.store)
        self.server = ApiServer(self.store, port)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Emulator:
        self.controllers.start()
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.controllers.stop()
