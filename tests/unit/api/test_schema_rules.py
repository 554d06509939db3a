"""Pieces of the create request's rules as JSON Schema: ranges of whole numbers, and the
names of environment variables (``test_schemathesis`` checks the whole against the server)."""

from __future__ import annotations

import random
import re

from agentproxy.api.schema_rules import env_schema, int_range


def test_integer_ranges_match_exactly_their_numbers():
    for low, high in ((1, 9), (1, 500), (100, 500), (7, 1234), (99, 101), (250, 250), (268435456, 536870912)):
        pattern = re.compile(f"^(?:{int_range(low, high)})$")
        for n in [*range(max(0, low - 30), low + 30), *range(high - 30, high + 30),
                  *random.Random(low).sample(range(1, 2 * high + 2), min(300, 2 * high + 1))]:
            assert bool(pattern.match(str(n))) == (low <= n <= high), (low, high, n)


def test_env_names_exclude_reserved_prefixes_and_in_k8s_mode_secret_words():
    names = re.compile(env_schema(secrets_refused=True)["propertyNames"]["pattern"])
    local = re.compile(env_schema(secrets_refused=False)["propertyNames"]["pattern"])
    for name in ("MODE", "_x", "KEYBOARD", "MONKEY", "TOKENS2"):
        assert names.match(name) and local.match(name), name
    for name in ("API_KEY", "my_token", "Db_Password_File", "SECRET", "A__KEY"):
        assert not names.match(name) and local.match(name), name
    for name in ("AGENTAPI_X", "AGENTPROXY_ID", "1ABC", "A-B", ""):
        assert not names.match(name) and not local.match(name), name
