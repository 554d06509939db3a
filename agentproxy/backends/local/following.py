"""The conversation of one run of a ready local agent.

While an agent is ready its agentapi's event stream is followed: after each
change of the conversation agentapi is asked to save it (within
``local_mode.state_save_interval``), and a first message that is not delivered
within ``agents.first_message_timeout`` is reported. The supervisor says what
saving and reporting mean (a signal, a reason); this class only keeps time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..conversation import DELIVERED, MESSAGE, ConversationFollower, first_message_overdue


class RunConversation:
    """Follows one run's conversation; :meth:`changed` is the follower's ``on_change``."""

    def __init__(self, *, save_interval: float, first_message_timeout: float, save: Callable[[], None],
                 delivered: Callable[[], None], overdue: Callable[[str], None], name: str = "conversation") -> None:
        self.save_interval = save_interval
        self.first_message_timeout = first_message_timeout
        self._save, self._delivered, self._overdue = save, delivered, overdue
        self.name = name
        self.follower: ConversationFollower | None = None
        self._task: asyncio.Task[None] | None = None
        self._save_timer: asyncio.TimerHandle | None = None
        self._first_message_timer: asyncio.TimerHandle | None = None

    def start(self, follower: ConversationFollower) -> None:
        """Follow the run's conversation through ``follower``."""
        loop = asyncio.get_running_loop()
        self.follower = follower
        self._task = loop.create_task(follower.follow(), name=self.name)
        if not follower.delivered:
            self._first_message_timer = loop.call_later(self.first_message_timeout, self._late)

    def stop(self, save: bool = False) -> None:
        """Stop following; ``save`` saves a change that is still waiting for its save, now."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for timer in (self._first_message_timer, self._save_timer):
            if timer is not None:
                timer.cancel()
        self._first_message_timer = None
        if self._save_timer is not None:
            self._save_timer = None
            if save:
                self._save()
        self.follower = None

    def changed(self, what: str) -> None:
        """What the follower saw: a message (save soon) or the first message delivered."""
        if what == MESSAGE and self._save_timer is None:
            self._save_timer = asyncio.get_running_loop().call_later(self.save_interval, self._save_due)
        elif what == DELIVERED:
            self._delivered()

    def _save_due(self) -> None:
        self._save_timer = None
        self._save()

    def _late(self) -> None:
        self._first_message_timer = None
        follower = self.follower
        if follower is not None and not follower.delivered:
            self._overdue(first_message_overdue(self.first_message_timeout, follower.status))
