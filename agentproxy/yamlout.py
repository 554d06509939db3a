"""Manifests written as YAML that Kubernetes reads as written, by PyYAML's C dumper (libyaml).

:class:`ManifestDumper` is PyYAML's safe dumper made to quote every string that any YAML 1.1
or 1.2 resolver would read as something else: Kubernetes decodes manifests with go-yaml's
YAML 1.1 rules (``y``, ``off``, ``1e3``, ``0o17``, ``2001-1-2`` are no strings there), which
PyYAML's resolver alone would write unquoted. Only ``agentproxy render`` and the generated
deploy manifests write YAML (for people to read and ``kubectl`` to apply); creates,
reconciles and the API never do.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.resolver import Resolver

OTHER_TYPES = re.compile(r"""^(?:
    [yYnN] | [Yy]es | YES | [Nn]o | NO | [Tt]rue | TRUE | [Ff]alse | FALSE | [Oo]n | ON | [Oo]ff | OFF
  | ~ | [Nn]ull | NULL
  | [-+]?[0-9][0-9_]*                                    # decimal; YAML 1.1 octal (017); separators
  | [-+]?0[bBoOxX][0-9a-fA-F_]*                          # binary, YAML 1.2 octal (0o17), hex
  | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?     # YAML 1.1 sexagesimal (1:30)
  | [-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?  # floats with a point (1., .5, 1.5e3)
  | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+                     # YAML 1.2 and go-yaml: 1e3 without a point
  | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
  | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt\ \t].*)?         # timestamps: every form starts with a date
  | << | =                                              # merge and value keys
)\Z""", re.X | re.S)
"""Plain scalars that some YAML 1.1 or 1.2 resolver (PyYAML's, go-yaml v2's and v3's, the YAML
1.2 core schema) reads as a boolean, null, number, timestamp or merge key rather than a string.
A superset: a string that matches is quoted, which every resolver reads as a string."""

_OTHER_TAG = "tag:agentproxy.io,2024:not-a-string"
"""The tag :class:`ManifestResolver` gives such scalars; it is never written (a string is
represented with the ``str`` tag, so a scalar that resolves otherwise is quoted instead)."""


class ManifestResolver(Resolver):
    """PyYAML's resolver, plus :data:`OTHER_TYPES` for the plain scalars other resolvers would
    not read as strings."""


ManifestResolver.add_implicit_resolver(_OTHER_TAG, OTHER_TYPES, None)

_SafeDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's emitter where PyYAML was built with it (its wheels are), else PyYAML's own."""


class ManifestDumper(_SafeDumper, ManifestResolver):  # type: ignore[misc]  # a base chosen at import (Any)
    """PyYAML's safe dumper quoting every string in :data:`OTHER_TYPES`."""


def dump_all(documents: list[Any]) -> str:
    """Multi-document YAML (``---`` before each), keys in their order, no line folded, every
    non-ASCII character escaped."""
    return yaml.dump_all(documents, Dumper=ManifestDumper, sort_keys=False, explicit_start=True,
                         width=1_000_000, allow_unicode=False)
