"""The unit cache: a unit read while a commit changed it is never cached; others are."""

from __future__ import annotations

from launcher_server.store.reading import UnitCache
from xmanager.launcher.v1 import launcher_pb2 as pb


def _unit(work_unit_id: int, args: str = "") -> pb.WorkUnit:
    return pb.WorkUnit(experiment_id=1, work_unit_id=work_unit_id, args_json=args)


def test_a_read_overlapping_a_commit_to_another_unit_is_cached() -> None:
    cache = UnitCache()
    generation = cache.generation  # the read begins
    cache.invalidate([(1, 2)])  # a sweep's commit, to another unit
    cache.put((1, 1), _unit(1), generation)
    assert cache.get((1, 1)) == _unit(1)


def test_a_read_overlapping_a_commit_to_its_unit_is_not_cached() -> None:
    cache = UnitCache()
    generation = cache.generation
    cache.invalidate([(1, 1)])  # committed after the read began: the read may be stale
    cache.put((1, 1), _unit(1, "old"), generation)
    assert cache.get((1, 1)) is None
    # A read begun after that commit is cached.
    cache.put((1, 1), _unit(1, "new"), cache.generation)
    assert cache.get((1, 1)) == _unit(1, "new")


def test_a_commit_drops_the_cached_unit() -> None:
    cache = UnitCache()
    cache.put((1, 1), _unit(1), cache.generation)
    cache.put((1, 2), _unit(2), cache.generation)
    cache.invalidate([(1, 1)])
    assert cache.get((1, 1)) is None
    assert cache.get((1, 2)) == _unit(2)


def test_a_read_older_than_the_changes_remembered_is_not_cached() -> None:
    cache = UnitCache(changes_kept=2)
    generation = cache.generation
    cache.invalidate([(1, 1)])
    cache.invalidate([(1, 2)])
    cache.invalidate([(1, 3)])  # (1, 1)'s change is forgotten
    cache.put((1, 1), _unit(1), generation)
    cache.put((1, 4), _unit(4), generation)  # unchanged, but the read is too old to tell
    assert cache.get((1, 1)) is None
    assert cache.get((1, 4)) is None
    cache.put((1, 4), _unit(4), cache.generation)
    assert cache.get((1, 4)) == _unit(4)


def test_a_read_begun_before_a_clear_is_not_cached() -> None:
    cache = UnitCache()
    generation = cache.generation
    cache.clear()  # the read process missed changes: it knows none of them
    cache.put((1, 1), _unit(1), generation)
    assert cache.get((1, 1)) is None
    cache.put((1, 1), _unit(1), cache.generation)
    assert cache.get((1, 1)) == _unit(1)


def test_the_least_recently_read_unit_leaves_a_full_cache() -> None:
    cache = UnitCache(capacity=2)
    for work_unit_id in (1, 2):
        cache.put((1, work_unit_id), _unit(work_unit_id), cache.generation)
    assert cache.get((1, 1)) is not None  # 2 is now the least recently read
    cache.put((1, 3), _unit(3), cache.generation)
    assert cache.get((1, 2)) is None
    assert cache.get((1, 1)) is not None
    assert cache.get((1, 3)) is not None
