"""The tenant boundary as workers and the trainer enforce it.

Owns whose job a record is and what that tenant may ask for
(:mod:`~workers.tenancy.guard`), the tenants' grants read from the registry and cached
(:mod:`~workers.tenancy.grants`), the rate-limited audit of refusals
(:mod:`~workers.tenancy.audit`) and following the control topic, where alias moves and
grant changes are announced (:mod:`~workers.tenancy.control`).
"""
