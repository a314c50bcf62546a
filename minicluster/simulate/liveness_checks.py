"""The lost-task-executor and ask-reply checks of InvariantChecker: a TaskExecutor the
ResourceManager lost stops its tasks in time, and every ask is answered by its timeout."""

from __future__ import annotations

import heapq

import trio

from minicluster.rpc.reply import Reply
from minicluster.simulate.checker_state import (
    _EPSILON,
    CheckerState,
    _waiting_asks,
)


class LivenessChecks(CheckerState):
    """Checks that what has timed out is over: lost TaskExecutors and unanswered asks."""

    # lost TaskExecutors
    def _track_lost(self, now: float) -> None:
        registered = self.cluster.resource_manager.task_executors.keys()
        if registered != self._rm_registered:
            live = self.cluster.task_executors
            for rid in self._rm_registered - registered:
                te = live.get(rid)
                if te is not None and te.registration_state != "stopped":
                    self._lost_since[rid] = now
            for rid in registered - self._rm_registered:
                self._lost_since.pop(rid, None)
            self._rm_registered = set(registered)

    def check_lost_task_executors(self, now: float) -> None:
        bound = self.config.heartbeat_timeout + self.config.heartbeat_interval
        for rid, since in list(self._lost_since.items()):
            te = self.cluster.task_executors.get(rid)
            if te is None or te.registration_state == "stopped":
                del self._lost_since[rid]
            elif now - since > bound + _EPSILON and te.tasks:
                del self._lost_since[rid]
                names = ", ".join(
                    f"{t.tdd.vertex}[{t.tdd.subtask}] of {self.job_name(t.tdd.job_id)}"
                    for t in list(te.tasks.values())[:3]
                )
                self.violation(
                    "lost-task-executor",
                    f"TaskExecutor {rid} still runs {len(te.tasks)} task(s) ({names}) "
                    f"{now - since:.3f} s after the ResourceManager declared it lost (heartbeat "
                    f"timeout {self.config.heartbeat_timeout:g} s, interval "
                    f"{self.config.heartbeat_interval:g} s)",
                    key=f"{rid}:{since}",
                )

    # asks
    def _check_asks(self) -> None:
        asks = self._asks
        now = trio.current_time()
        while asks:
            deadline, _, reply = asks[0]
            if reply.done:
                heapq.heappop(asks)
            elif deadline + _EPSILON < now:
                heapq.heappop(asks)
                self.violation(
                    "ask-reply",
                    f"an ask is still waiting for its reply {now - deadline:.3f} s after its "
                    f"timeout ({self._describe_reply(reply)})",
                    key=f"ask:{id(reply)}:{deadline}",
                )
            else:
                return

    def _describe_reply(self, reply: Reply) -> str:
        for found, describe, _ in _waiting_asks():
            if found is reply:
                return describe
        return "no task waits for it any more"
