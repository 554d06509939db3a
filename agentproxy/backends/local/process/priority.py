"""The CPU priority of agents: below the proxy's, so that the proxy that supervises them
(and above all a restarted one, which must load and serve before it can re-adopt
anything) is never starved by the agents it supervises.

An idle agentapi is not idle: it redraws its emulated terminal many times a second
(an idle echo agent with agentapi v0.12 uses about a tenth of a core), so a hundred
agents want more CPU than a small machine has. At equal priority a restarted proxy
then waits in the run queue for most of its start-up; this is what made its time to
``/healthz`` grow with the number of agents.

On Linux two things decide a process's share, and both are set:

- its *autogroup*: with ``kernel.sched_autogroup_enabled`` every session is a
  scheduling group of its own, whose nice value (``/proc/PID/autogroup``, the same
  through any member) covers every thread of it, present and future. agentapi is
  started by the agent starter (see :mod:`.starter`) in the starter's session, one
  group for every agent, and that group is lowered: a hundred agents or five hundred
  weigh together as one program at ``agent_nice``. Measured with 100 idle echo agents
  on 2 cores and nothing else running: a restarted proxy answered ``/healthz`` after
  4.2 s with the group at nice 0 (2.8 s of it waiting for a CPU) and after 1.3 s with it
  at nice 10 (0.1 s waiting), all agents ready after 20 s and 4.3 s. agentapi runs the
  agent program in a terminal session of its own, another group, lowered as well (as
  is an agentapi that leads a session of its own, started where there are no
  autogroups or by an earlier version). The proxy's own session is never lowered;
- the nice value of each of its threads, which is what counts where autogroups do not
  (a cgroup with its own CPU controller, such as a systemd service). Threads and
  processes created later inherit it from the thread that creates them.

Priorities are only ever lowered (no privilege needed); Kubernetes gives a pod
without CPU requests the lowest weight for the same reason.
"""

from __future__ import annotations

import errno
import os
import re
import time

MAX_NICE = 19
"""The lowest CPU priority (nice value) there is."""

_AUTOGROUP = re.compile(r"^/autogroup-\d+ nice (-?\d+)\s*$")


def autogroup_nice(text: str) -> int | None:
    """The nice value of a ``/proc/PID/autogroup`` line (``/autogroup-42 nice 0``); None when
    it is not one."""
    found = _AUTOGROUP.match(text)
    return int(found.group(1)) if found else None


def lower_priority(pid: int, nice: int, *, threads: bool = True) -> bool:
    """Give the process ``pid`` the nice value ``nice`` where it runs at a higher priority
    now, never raising one: its autogroup (the scheduling group of its session, whoever
    leads it, unless that is this process's own session) and, with ``threads``, each of its
    threads. Lowering the group through any of its members is what puts the agent starter's
    one group of every agent (see :mod:`.starter`) below the proxy. True when that is done
    (or there was nothing to do), False when the kernel asks to retry: it accepts a change
    of an autogroup's nice value at most ten times a second from an unprivileged process.
    A process that is gone is nothing to do."""
    if nice <= 0:
        return True
    done = True if _in_our_session(pid) else _lower_autogroup(pid, nice)
    for tid in _threads(pid) if threads else ():
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            continue  # the thread ended meanwhile, or it is not ours to change
    return done


def lower_group(pid: int, nice: int, attempts: int = 30, interval: float = 0.1) -> bool:
    """Lower the autogroup of ``pid`` (not its threads) as :func:`lower_priority` does,
    retrying while the kernel asks to: blocking, up to ``attempts`` times ``interval``
    seconds. False when the kernel still refused."""
    for attempt in range(attempts):
        if lower_priority(pid, nice, threads=False):
            return True
        if attempt + 1 < attempts:
            time.sleep(interval)
    return False


def _in_our_session(pid: int) -> bool:
    """Whether ``pid`` is in this process's session (or gone): the proxy's own group is
    never lowered."""
    try:
        return os.getsid(pid) == os.getsid(0)
    except OSError:
        return True


def _lower_autogroup(pid: int, nice: int) -> bool:
    path = f"/proc/{pid}/autogroup"
    try:
        with open(path, encoding="ascii") as src:
            current = autogroup_nice(src.read())
        if current is None or current >= nice:
            return True
        with open(path, "w", encoding="ascii") as out:
            out.write(str(nice))
    except OSError as exc:
        # EAGAIN: the rate limit of autogroup changes; anything else (no autogroups in this
        # kernel, the process gone, not ours) is left as it is.
        return exc.errno != errno.EAGAIN
    return True


def _threads(pid: int) -> list[int]:
    """The thread ids of ``pid`` (the pid alone where there is no ``/proc``)."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return [] if os.path.isdir("/proc/self") else [pid]
    except (OSError, ValueError):
        return []
