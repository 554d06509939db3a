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
  scheduling group of its own. agentapi runs the agent program in a terminal session
  of its own, so each agent program is such a group, whose nice value
  (``/proc/PID/autogroup``) covers every thread of it, present and future, and is
  lowered. agentapi itself is started by the agent starter (see :mod:`.starter`) in the
  starter's session, one group for every agent, which keeps the weight of one ordinary
  program however many agents there are (an agentapi that leads a session of its own,
  started where there are no autogroups or by an earlier version, is lowered as well);
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

MAX_NICE = 19
"""The lowest CPU priority (nice value) there is."""

_AUTOGROUP = re.compile(r"^/autogroup-\d+ nice (-?\d+)\s*$")


def autogroup_nice(text: str) -> int | None:
    """The nice value of a ``/proc/PID/autogroup`` line (``/autogroup-42 nice 0``); None when
    it is not one."""
    found = _AUTOGROUP.match(text)
    return int(found.group(1)) if found else None


def lower_priority(pid: int, nice: int, *, autogroup: bool = True) -> bool:
    """Give the process ``pid`` (each of its threads, and its autogroup when it leads its
    session) the nice value ``nice`` where it runs at a higher priority now, never raising
    one. The autogroup of a session led by another process is left as it is: that is the
    session of the agent starter (see :mod:`.starter`), one group for every agent, which is
    meant to weigh as one ordinary program. ``autogroup=False`` leaves the autogroup alone
    in any case. True when that is done (or there was nothing to do), False when the kernel
    asks to retry: it accepts a change of an autogroup's nice value at most ten times a
    second from an unprivileged process. A process that is gone is nothing to do."""
    if nice <= 0:
        return True
    done = _lower_autogroup(pid, nice) if autogroup and _leads_session(pid) else True
    for tid in _threads(pid):
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            continue  # the thread ended meanwhile, or it is not ours to change
    return done


def _leads_session(pid: int) -> bool:
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False


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
