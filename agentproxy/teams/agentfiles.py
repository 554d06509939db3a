"""A profile's files in an agent's prepared home: its instruction file and MCP servers.

Claude Code reads the user's instructions from ``~/.claude/CLAUDE.md`` and MCP servers from
``mcpServers`` of ``~/.claude.json``; other agents (Codex, ...) read ``~/AGENTS.md``-style
instructions, given here as ``AGENTS.md`` in the home and, for Codex, ``~/.codex/AGENTS.md``.
The text is the operator's (settings), written before each start, mode 0600.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..agenthome import CONFIG_FILE, uses_claude
from ..privatefile import write_private
from ..spec import AgentSpec
from .config import Profile, teams_of


def home_files(profile: Profile, command: tuple[str, ...]) -> dict[str, str]:
    """The instruction files of ``profile`` for an agent running ``command``, by path in its home."""
    if profile.instructions is None:
        return {}
    if uses_claude(command):
        return {".claude/CLAUDE.md": profile.instructions}
    return {"AGENTS.md": profile.instructions, ".codex/AGENTS.md": profile.instructions}


def with_mcp_servers(config: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """Claude Code's ``.claude.json`` with the profile's MCP servers (the user's own others kept)."""
    servers = config.get("mcpServers")
    merged = {**(servers if isinstance(servers, dict) else {}), **{k: dict(v) for k, v in profile.mcp_servers.items()}}
    return {**config, "mcpServers": merged}


def prepare_profile_home(settings: Any, spec: AgentSpec, home: Path) -> bool:
    """Write the files of ``spec``'s profile into ``home``; True when it wrote any."""
    profile = teams_of(settings).profiles.get(spec.profile) if spec.profile is not None else None
    if profile is None:
        return False
    files = home_files(profile, spec.command)
    for relative, text in files.items():
        _write(home / relative, text)
    if profile.mcp_servers and uses_claude(spec.command):
        path = home / CONFIG_FILE
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            config = {}
        _write(path, json.dumps(with_mcp_servers(config if isinstance(config, dict) else {}, profile), indent=2))
        return True
    return bool(files)


def _write(path: Path, text: str) -> None:
    write_private(path, text)
