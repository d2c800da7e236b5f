"""The run lifecycle: the only code that touches a run's Redis structures.

Every change of a run — enqueue, claim, lease renewal, event append, retry, finish, cancel,
sweep of a dead worker's runs, an operator's re-queue — is one Lua script in ``scripts/``
(each opens with its KEYS / ARGV / returns), called through :class:`RunStore` (the
gateway's side), :class:`Leases` (the worker's side) or :func:`streams.follow` (readers).
Nothing else writes these keys. Diagram and faults tested: docs/reliability.md.

States::

                 claim (new fence token)                 succeeded / failed
    enqueue ──> queued ─────────────────────> running ──────────────────────> ended
                  ^  ^                           │  │
                  │  └── retry (backoff), ───────┘  │ cancel (client)
                  │      worker stopping, lease     └─────────────────────────> cancelled
                  │      lapsed (as a suspect)          ^
                  └── operator re-queue of a failed run │ cancel while queued

Invariants, kept by the scripts:

1. **One place.** A run is in exactly one of: its pipeline's queue (queued, due now or
   after a backoff), the suspects of its pipeline (queued, lost with a dead worker), the
   leases of its pipeline (running), its thread's waiting list (queued behind the thread's
   head: :mod:`~langscale.lifecycle.threads`), or none of them (ended).
2. **Fencing.** Each claim gives the attempt a new fence token. Every write of an attempt
   (event, lease renewal, retry, finish, LLM replay record) presents it and is refused
   unless it is still the run's; sweeping a lapsed lease and cancelling change the token,
   so a paused or partitioned worker that wakes up writes nothing.
3. **Ends once.** A final state is written once; later outcomes are refused.
4. **One clock.** Lease ends, due times, ages and rates are Redis server time, read inside
   the scripts. After Redis was silent (down, restarting, failing over, or every worker
   frozen) for a lease, holders get one more lease to renew before anything lapses.
5. **Blame the culprit.** A lapsed run becomes a suspect and later runs alone; only a death
   while running alone counts against it (``LANGSCALE_MAX_CRASHES``), and it exonerates
   the suspects that died with it.
6. **Nothing silent.** Events are numbered; a reader who missed some is told (a ``gap``).
"""

from langscale.lifecycle.config import LifecycleConfig
from langscale.lifecycle.leases import (
    Abandoned,
    Applied,
    Claim,
    ClaimResult,
    Failed,
    Leases,
    Outcome,
    Requeue,
    Retry,
    StaleAttempt,
    Succeeded,
)
from langscale.lifecycle.store import (
    Catalog,
    FollowStart,
    ListPage,
    ListQuery,
    PipelineStats,
    QueueStats,
    RunStore,
    Submitted,
)
from langscale.lifecycle.streams import Event, StreamHub, follow
from langscale.lifecycle.threads import (
    MULTITASK_STRATEGIES,
    HistoryEntry,
    MultitaskStrategy,
    ThreadPage,
    ThreadRecord,
    ThreadSummary,
    is_valid_thread_id,
)

__all__ = [
    "MULTITASK_STRATEGIES",
    "Abandoned",
    "Applied",
    "Catalog",
    "Claim",
    "ClaimResult",
    "Event",
    "Failed",
    "FollowStart",
    "HistoryEntry",
    "Leases",
    "LifecycleConfig",
    "ListPage",
    "ListQuery",
    "MultitaskStrategy",
    "Outcome",
    "PipelineStats",
    "QueueStats",
    "Requeue",
    "Retry",
    "RunStore",
    "StaleAttempt",
    "StreamHub",
    "Submitted",
    "Succeeded",
    "ThreadPage",
    "ThreadRecord",
    "ThreadSummary",
    "follow",
    "is_valid_thread_id",
]
