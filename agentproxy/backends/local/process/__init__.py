"""Processes of local agents: spawn, identify, watch, sample and stop whole trees.

One module per concern: :mod:`.programs` (where programs are and what
environment they get), :mod:`.identity` (telling a process from a later user of
its pid: :func:`same_process`), :mod:`.leader` (the agentapi process of an
agent), :mod:`.spawn` (starting it off the event loop), :mod:`.table` (reads of
the process table), :mod:`.stop` (ending a whole tree) and :mod:`.sampling`
(CPU, memory and directory sizes), :mod:`.priority` (agents below the proxy's CPU
priority), :mod:`.starter` (the helper that starts every agent in one scheduling group). Their
public names are importable from here.
"""

from .identity import START_TOLERANCE, Identity, alive, find_process, identify, process_of, same_process
from .leader import AgentProcess
from .priority import lower_group, lower_priority
from .programs import agent_environment, executable_search_path, find_executable
from .sampling import TreeSample, TreeSampler, directory_size
from .spawn import spawn_in_thread
from .starter import AgentStarter, autogroups_enabled
from .stop import stop_in_background, stop_tree
from .table import MAX_TREE, TAG_VARIABLE, ProcessTable, TableSnapshot, live_family, read_table, tagged_processes

__all__ = [
    "START_TOLERANCE", "MAX_TREE", "TAG_VARIABLE", "AgentProcess", "AgentStarter", "Identity", "ProcessTable",
    "TableSnapshot",
    "TreeSample", "TreeSampler", "agent_environment", "alive", "directory_size", "executable_search_path",
    "find_executable", "find_process", "identify", "live_family", "lower_group", "lower_priority", "process_of", "read_table",
    "same_process", "spawn_in_thread", "stop_in_background", "stop_tree", "tagged_processes", "autogroups_enabled",
]
