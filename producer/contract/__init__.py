"""The public wire contract: messages, name rules, tenant namespaces, number rules.

The ground floor: the SDK, the workers and the registry all import their rules from
here, and it imports nothing of maas's (only msgspec, orjson and numpy).
:mod:`~producer.contract.messages` holds the job and result messages (the single source
of truth for the schema), :mod:`~producer.contract.names` the rules for model names, job
ids, aliases, tenants and principals, :mod:`~producer.contract.tenancy` tenant
namespaces and topic names, :mod:`~producer.contract.numbers` the JSON number rules,
:mod:`~producer.contract.errors` the one root of their errors.
"""
