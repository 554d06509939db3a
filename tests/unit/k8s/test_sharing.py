"""Equal parts of cached objects stored once (:mod:`agentproxy.backends.k8s.sharing`)."""

from __future__ import annotations

import copy
import json

from agentproxy.backends.k8s.sharing import share


def _pod(name: str, ip: str) -> dict:
    return json.loads(json.dumps({
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "agentapi", "agent": name}},
        "spec": {"containers": [{"name": "agentapi", "image": "agentapi:1", "ports": [{"containerPort": 3284}],
                                 "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"data-{name}"}}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }))


def test_what_equals_the_like_object_is_its_part_and_the_rest_stays_as_parsed() -> None:
    first = _pod("agent-a-0", "10.0.0.1")
    second = _pod("agent-b-0", "10.0.0.2")
    expected = copy.deepcopy(second)
    shared = share(second, first)
    assert shared == expected  # the same object, by value
    assert shared["spec"]["containers"] is first["spec"]["containers"]
    assert shared["status"]["conditions"] is first["status"]["conditions"]
    assert shared["metadata"]["labels"]["app.kubernetes.io/name"] is first["metadata"]["labels"]["app.kubernetes.io/name"]
    # Different parts are not shared, nor is anything on the way to one.
    assert shared["metadata"] is not first["metadata"]
    assert shared["spec"] is not first["spec"] and shared["spec"]["volumes"] is not first["spec"]["volumes"]
    assert first == _pod("agent-a-0", "10.0.0.1")  # the like object is never changed


def test_an_equal_object_is_the_like_one() -> None:
    first = _pod("agent-a-0", "10.0.0.1")
    assert share(_pod("agent-a-0", "10.0.0.1"), first) is first


def test_parts_of_other_types_lengths_or_keys_are_not_shared() -> None:
    assert share({"a": 1}, None) == {"a": 1}
    assert share([1, 2], [1, 2, 3]) == [1, 2]
    assert share({"a": True, "b": 1}, {"a": "true", "b": 2})["a"] is True
    # (Python's == takes 1 for True inside an equal subtree: the API server's objects of a kind
    # hold one JSON type at each place, and sharing relies on that; see share's docstring.)
    one = {"a": [1], "b": 2}
    other = {"a": [1]}
    shared = share(one, other)
    assert shared == {"a": [1], "b": 2} and shared["a"] is other["a"]
    assert share({"a": [1]}, {"a": [1], "b": 2}) == {"a": [1]}


def test_a_chain_of_objects_holds_one_copy_of_what_they_share() -> None:
    pods, like = [], None
    for n in range(50):
        like = share(_pod(f"agent-{n}-0", f"10.0.0.{n}"), like)
        pods.append(like)
    assert len({id(p["spec"]["containers"]) for p in pods}) == 1
    assert [p["status"]["podIP"] for p in pods] == [f"10.0.0.{n}" for n in range(50)]


def test_the_keys_of_what_is_not_shared_are_one_string_each() -> None:
    # Two events are two JSON documents: the parser gives each its own copy of every key.
    first = json.loads('{"metadata": {"name": "a", "labels": {"agentproxy.io/agent-id": "a"}}}')
    second = json.loads('{"metadata": {"name": "b", "labels": {"agentproxy.io/agent-id": "b"}}}')
    stored = [share(first), share(second, first)]
    keys = [next(iter(o["metadata"]["labels"])) for o in stored]
    assert keys[0] is keys[1] and keys[0] is not next(iter(json.loads('{"agentproxy.io/agent-id": 1}')))
    assert stored[1] == {"metadata": {"name": "b", "labels": {"agentproxy.io/agent-id": "b"}}}
