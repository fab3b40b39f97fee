"""The monitor: are the answers right? (``maas monitor``).

Owns the join of what workers answered (CaptureRecords on every tenant's capture
topic) with the ground truth clients send (Feedback on the feedback topics) by
``job_id``, within a join window (:mod:`~workers.monitor.join`, Kafka-free and memory
bounded); turning each joined row into its share of a quality window per model,
version and time window (:mod:`~workers.monitor.scoring`); and the process around
them (:mod:`~workers.monitor.service`): its own consumer group over both topics
(range-assigned, so one monitor owns both sides of a ``job_id``), dead letters for
feedback that cannot be scored, Prometheus metrics, and the windows written to the
registry together with the rows they count, so that a monitor killed and started
again (which reads the topics again from the start of the join window) counts no row
twice and loses none; the keys of counted rows are forgotten once they cannot be
joined again (:mod:`~workers.monitor.pruning`). Beside the join, the drift side
(:mod:`~workers.monitor.drifting`): captured rows gathered per version and window and
compared with the version's reference profile (the statistics are :mod:`workers.drift`'s)
when the window closes, each window written once; and the policies that turn windows
into one retrain job per cooldown (:mod:`~workers.monitor.acting`). A version's reference
from a data file is :mod:`~workers.monitor.baseline`'s. It uses the registry and kafka;
serving and training know nothing of it.
"""

from workers.monitor.join import JoinSettings, JoinState, Labelled, Refused
from workers.monitor.scoring import contribution

__all__ = ["JoinSettings", "JoinState", "Labelled", "Refused", "contribution"]
