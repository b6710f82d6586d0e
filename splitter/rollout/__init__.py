"""Rollouts: the canary and blue-green processes, automated (docs/rollouts.md).

One rollout at a time takes a pool, the *candidate*, to all of the traffic, judging it
against the *baseline* as it goes. The engine runs in the primary process: it reads the
per-pool statistics of every process (`stats.Window`), asks the judge (`splitter.rollout.judge`),
and changes weights through the same controller as the admin API (source `rollout`), so
the state file, the events and the workers all follow.

States (`status`, and `phase` within it):

    status       phase               what it waits for
    -----------  ------------------  -------------------------------------------------
    progressing  judging             a step in force; its requests judged every second
                                     (a canary's shadow test step: the copies' answers)
    progressing  gate                the gates, asked before a weight increase
    paused       manual              a {"pause": true} step: resume or promote
    paused       gate                a gate said no or did not answer: asked every 10 s
    paused       inconclusive        max passed with no verdict (on_inconclusive: pause)
    paused       awaiting_promotion  a passed blue-green preview (auto_promote off)
    paused       operator            pause was called: resume
    paused       sample_ratio        the realised split departs from the weights
    promoted / rolled_back / cancelled   final

Transitions:

    start ---------------------------------> [gates] -> step 0 (canary) / preview (blue-green)
    judging --fail (any time)--------------> rolled_back: candidate 0, baseline as it started
    judging --pass (after hold)------------> next step: [gates] then its weight; after the
                                             last step: promoted (candidate 100, others 0)
    judging --max passed, no verdict-------> on_inconclusive: paused | next step | rolled_back
    judging --candidate has no live backend
              for max(warmup, 5 s)---------> rolled_back
    preview --pass-------------------------> auto_promote: [gates] then switch | paused
    keep    --fail-------------------------> rolled_back (the weights from before the switch)
    keep    --`keep` over------------------> promoted
    pause / resume / promote / abort ------> as docs/rollouts.md says
    a file edit of the weights ------------> cancelled (the file's weights stand)

Rules:

- Requests judged: those the weighted choice sent (for a blue-green preview: those the
  override header sent to the candidate), skipping every second that began within
  `analysis.warmup` of the step's weight change; a second is read once it is complete in
  every process (two seconds after it ended).
- Slow: longer than max(the baseline's p95 over the last minute, `latency_floor`).
- After a restart the rollout goes on at the same step, that step's judging started again.
- Every transition: an event (source `rollout`), the webhooks that asked for it, the state
  saved before anything is answered.
- With a shared store (docs/operations.md#several-replicas) the rollout is part of the fleet's
document:
  any replica takes the API's calls, each a transition written by compare-and-set; one
  replica, the leader (it holds the store's lease), judges and asks the gates, and the
  replica that takes the lead after it goes on at the same step, judging started again.
  The judge reads the fleet's statistics (every replica shares its own every second).
"""

from splitter.errors import RolloutError
from splitter.rollout.engine import RolloutEngine
from splitter.rollout.host import RolloutHost
from splitter.rollout.record import Rollout, shadow_in_force
from splitter.rollout.shadowstep import ShadowCounts

__all__ = ["Rollout", "RolloutEngine", "RolloutError", "RolloutHost", "ShadowCounts",
           "shadow_in_force"]  # fmt: skip
