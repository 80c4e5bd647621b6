"""The emulated API server's object store: resource versions, watch history, garbage collection.

One lock guards everything; a condition wakes watchers. History is bounded like etcd's
compaction, so a watch resumed from too old a resourceVersion gets 410 Gone.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]
# Kinds by their URL plural; nodes are cluster-scoped (namespace "").
KINDS = {
    "pods": ("v1", "Pod"),
    "services": ("v1", "Service"),
    "configmaps": ("v1", "ConfigMap"),
    "nodes": ("v1", "Node"),
    "jobs": ("batch/v1", "Job"),
}
_BY_KIND = {kind: plural for plural, (_, kind) in KINDS.items()}
FOREGROUND = "foregroundDeletion"


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


@dataclasses.dataclass(frozen=True)
class Event:
    rv: int
    plural: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _matches_requirement(labels: dict[str, str], requirement: str) -> bool:
    requirement = requirement.strip()
    for op in (" notin ", " in "):
        if op in requirement:
            key, _, values = requirement.partition(op)
            wanted = {v.strip() for v in values.strip().strip("()").split(",")}
            inside = labels.get(key.strip()) in wanted
            return inside if op == " in " else not inside
    if "!=" in requirement:
        key, _, value = requirement.partition("!=")
        return labels.get(key.strip()) != value.strip()
    if "=" in requirement:
        key, _, value = requirement.replace("==", "=").partition("=")
        return labels.get(key.strip()) == value.strip()
    if requirement.startswith("!"):
        return requirement[1:].strip() not in labels
    return requirement in labels


def _split_selector(selector: str) -> list[str]:
    """Splits on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def label_match(obj: Obj, selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(_matches_requirement(labels, r) for r in _split_selector(selector or ""))


def _field(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_match(obj: Obj, selector: str) -> bool:
    for requirement in _split_selector(selector or ""):
        if "!=" in requirement:
            key, _, value = requirement.partition("!=")
            if _field(obj, key.strip()) == value.strip():
                return False
        else:
            key, _, value = requirement.replace("==", "=").partition("=")
            if _field(obj, key.strip()) != value.strip():
                return False
    return True


class Store:
    def __init__(self, history: int = 100_000, validate: Callable[[Obj], None] | None = None):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._rv = 1
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._compacted = 1  # watches from an rv below this get 410 Gone
        self._validate = validate

    # -- versions and history ---------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def _record(self, plural: str, type_: str, obj: Obj) -> None:
        self._rv += 1
        if type_ != "DELETED":
            obj["metadata"]["resourceVersion"] = str(self._rv)
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv + 1
        self._history.append(Event(self._rv, plural, type_, copy.deepcopy(obj)))
        self.changed.notify_all()

    def compact(self) -> None:
        """Forgets all history: every watch resumed from an older version gets 410 Gone."""
        with self.lock:
            self._history.clear()
            self._compacted = self._rv + 1
            self._rv += 1

    def events_after(self, rv: int) -> list[Event]:
        """Events newer than rv; raises 410 Gone when history before them is compacted."""
        with self.lock:
            if rv + 1 < self._compacted:
                raise ApiError(
                    410, "Expired", f"too old resource version: {rv} ({self._compacted - 1})"
                )
            if not self._history or self._history[-1].rv <= rv:
                return []
            # History is sorted: skip from the right end.
            result = []
            for event in reversed(self._history):
                if event.rv <= rv:
                    break
                result.append(event)
            result.reverse()
            return result

    # -- objects ------------------------------------------------------------------------------

    def get(self, plural: str, namespace: str, name: str) -> Obj:
        with self.lock:
            obj = self._objects.get((plural, namespace, name))
            if obj is None:
                kind = KINDS[plural][1]
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found ({kind})')
            return copy.deepcopy(obj)

    def list(
        self, plural: str, namespace: str | None, labels: str = "", fields: str = ""
    ) -> tuple[list[Obj], int]:
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for (p, ns, _), obj in self._objects.items()
                if p == plural
                and (namespace is None or ns == namespace)
                and label_match(obj, labels)
                and field_match(obj, fields)
            ]
            return items, self._rv

    def create(self, plural: str, namespace: str, obj: Obj) -> Obj:
        api_version, kind = KINDS[plural]
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        name = metadata.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{kind}: metadata.name: Required value")
        if plural != "nodes":
            if metadata.get("namespace", namespace) != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the object does not match")
            metadata["namespace"] = namespace
        if self._validate is not None:
            self._validate(obj)
        with self.lock:
            key = (plural, namespace, name)
            if key in self._objects:
                raise ApiError(409, "AlreadyExists", f'{plural} "{name}" already exists')
            for owner in metadata.get("ownerReferences") or []:
                found = self._find_owner(namespace, owner)
                if found is not None and found["metadata"].get("deletionTimestamp"):
                    raise ApiError(403, "Forbidden", f"owner {owner['name']} is being deleted")
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = now()
            metadata["generation"] = 1
            if plural == "pods":
                obj.setdefault("status", {"phase": "Pending"})
            self._objects[key] = obj
            self._record(plural, "ADDED", obj)
            return copy.deepcopy(obj)

    def update(self, plural: str, namespace: str, name: str, mutate: Callable[[Obj], None]) -> Obj:
        with self.lock:
            obj = self._objects.get((plural, namespace, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            before = copy.deepcopy(obj)
            mutate(obj)
            if obj != before:
                self._record(plural, "MODIFIED", obj)
            self._maybe_remove(plural, namespace, name)
            return copy.deepcopy(obj)

    def _find_owner(self, namespace: str, ref: Obj) -> Obj | None:
        plural = _BY_KIND.get(ref.get("kind", ""))
        if plural is None:
            return None
        obj = self._objects.get((plural, namespace, ref.get("name", "")))
        if obj is None or obj["metadata"]["uid"] != ref.get("uid"):
            return None
        return obj

    def _dependents(self, owner: Obj) -> Iterable[tuple[str, str, str]]:
        uid = owner["metadata"]["uid"]
        namespace = owner["metadata"].get("namespace", "")
        for key, obj in list(self._objects.items()):
            if key[1] != namespace:
                continue
            if any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or []):
                yield key

    def delete(
        self,
        plural: str,
        namespace: str,
        name: str,
        propagation: str | None = None,
        grace: int | None = None,
    ) -> Obj:
        """Deletes with the API's semantics: graceful pods, foreground/background cascades."""
        with self.lock:
            key = (plural, namespace, name)
            obj = self._objects.get(key)
            if obj is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            if propagation is None:
                # batch/v1 Jobs orphan their pods by default, for compatibility.
                propagation = "Orphan" if plural == "jobs" else "Background"
            metadata = obj["metadata"]
            if propagation == "Foreground":
                finalizers = metadata.setdefault("finalizers", [])
                if FOREGROUND not in finalizers:
                    finalizers.append(FOREGROUND)
            if not metadata.get("deletionTimestamp"):
                metadata["deletionTimestamp"] = now()
            if plural == "pods":
                if grace is None:
                    grace = obj.get("spec", {}).get("terminationGracePeriodSeconds", 30)
                current = metadata.get("deletionGracePeriodSeconds")
                metadata["deletionGracePeriodSeconds"] = (
                    grace if current is None else min(current, grace)
                )
            self._record(plural, "MODIFIED", obj)
            snapshot = copy.deepcopy(obj)
            if propagation == "Orphan":
                for dep in list(self._dependents(obj)):
                    refs = self._objects[dep]["metadata"].get("ownerReferences") or []
                    self._objects[dep]["metadata"]["ownerReferences"] = [
                        r for r in refs if r.get("uid") != metadata["uid"]
                    ]
            else:
                for dep in list(self._dependents(obj)):
                    if dep in self._objects:
                        self.delete(*dep, propagation=propagation, grace=grace)
            self._maybe_remove(plural, namespace, name)
            return snapshot

    def _pod_gone(self, obj: Obj) -> bool:
        """A pod is removed once its node confirmed the stop (grace 0), or it never ran."""
        if obj["metadata"].get("deletionGracePeriodSeconds") == 0:
            return True
        return not obj.get("spec", {}).get("nodeName") or obj.get("status", {}).get("phase") in (
            "Succeeded",
            "Failed",
        )

    def _maybe_remove(self, plural: str, namespace: str, name: str) -> None:
        key = (plural, namespace, name)
        obj = self._objects.get(key)
        if obj is None or not obj["metadata"].get("deletionTimestamp"):
            return
        finalizers = obj["metadata"].get("finalizers") or []
        if FOREGROUND in finalizers and not any(self._dependents(obj)):
            finalizers.remove(FOREGROUND)
        if finalizers:
            return
        if plural == "pods" and not self._pod_gone(obj):
            return
        del self._objects[key]
        self._record(plural, "DELETED", obj)
        # An owner waiting in foreground deletion may now be free to go.
        for ref in obj["metadata"].get("ownerReferences") or []:
            owner = self._find_owner(namespace, ref)
            if owner is not None:
                self._maybe_remove(_BY_KIND[owner["kind"]], namespace, owner["metadata"]["name"])
        # Background deletion of an owner: dependents go too.
        for dep in list(self._dependents(obj)):
            if dep in self._objects:
                self.delete(*dep, propagation="Background")
