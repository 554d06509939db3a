"""Equal parts of the cache's objects stored once.

Every agent's StatefulSet, pod, Service, ConfigMap and PVC differ from another agent's in a
few names, labels, times and addresses; the rest (the pod template, probes, resources,
security contexts, volumes, conditions) is the same. Parsed from JSON, each copy is dicts,
lists and strings of its own: 43 KiB of memory an agent, 430 MB for 10,000 agents. The cache
stores each object sharing whatever equals the same place in a like object (the previous
version of the same object, or another object of its kind), which keeps an agent's objects in
18 KiB.

Sharing makes the cache's objects read-only: an object taken from it may share its parts with
thousands of others, and a change of one would change them all. Nothing changes a cached
object in place; a changed object is a copy (see :mod:`.plan`).
"""

from __future__ import annotations

from sys import intern
from typing import Any

__all__ = ["share"]

_ABSENT = object()
_CONTAINERS = (dict, list)


def share(new: Any, like: Any = None) -> Any:
    """``new`` (freshly parsed: nothing else holds its parts) with every part that equals the
    part at the same place in ``like`` replaced by ``like``'s; ``like`` itself when the two are
    equal. ``new`` is changed in place (and its dicts that are kept are copied with their keys
    interned); ``like`` never is. Parts are matched by key in dicts and by position in lists of
    the same length; numbers and strings are parts too.

    Parts of one type are compared with ``==``, which compares whole subtrees in C: most of an
    agent's object equals another's, and only the paths down to what differs are walked here
    (a third less of a start's time spent sharing than a walk of every part). ``==`` takes
    ``1`` for ``True`` inside a subtree; objects of one kind from the API server hold one JSON
    type at each place (Go structs), so no such pair meets."""
    if type(like) is type(new) and new == like:
        return like
    return _differing(new, like) if type(new) in _CONTAINERS else new


def _differing(new: Any, like: Any) -> Any:
    """:func:`share` of a dict or list ``new`` and a ``like`` that does not equal it. Each part
    is compared here, and only a part that differs is walked by a call of its own: most parts
    are equal scalars or equal subtrees, and a call for each was most of the time sharing took."""
    kind = type(new)
    if type(like) is not kind or (kind is list and len(like) != len(new)):
        return _all_interned(new)
    if kind is dict:
        for key, value in new.items():
            other = like.get(key, _ABSENT)  # of no JSON type: a part no like has, its keys interned
            if type(value) is type(other) and value == other:
                new[key] = other  # an existing key: the dict does not change size while iterated
            elif type(value) in _CONTAINERS:
                new[key] = _differing(value, other)
        return _interned(new)
    for index, value in enumerate(new):
        other = like[index]
        if type(value) is type(other) and value == other:
            new[index] = other
        elif type(value) in _CONTAINERS:
            new[index] = _differing(value, other)
    return new


def _interned(new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with its keys interned. Each watch event is a JSON document of its own, and the
    parser shares equal keys only within one document: without this, every object an event
    brought would hold its own copy of every key ("metadata", "labels", ...): 44 % of the
    cache of the agents a replica created itself."""
    return {intern(key): value for key, value in new.items()}


def _all_interned(new: Any) -> Any:
    """``new`` (a part no like object has) with the keys of every dict in it interned."""
    if type(new) is dict:
        return {intern(key): _all_interned(value) for key, value in new.items()}
    if type(new) is list:
        for index, value in enumerate(new):
            if type(value) in _CONTAINERS:
                new[index] = _all_interned(value)
    return new
