"""The steady-rate benchmark (issue #25): what a worker and its broker spend per job
when jobs arrive one at a time at a fixed rate, against the librdkafka per-message
loop at the same rate. ``python -m bench.steady``; ``make bench`` runs it after the
drain, and ``python -m bench.profile --rate R`` profiles the worker under it."""
