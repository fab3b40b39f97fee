"""The wire contract's errors: one root, the rule a value broke in the message.

The contract imports nothing of maas's, so its tree stands apart from the clients'
(:mod:`producer.errors`) and the registry's; each is also a ``ValueError``, as a bad
value is::

    ContractError (ValueError)  root
    ├── DecodeError        a record is not a valid message; ``field`` names the field
    │                      (:mod:`producer.contract.messages`)
    ├── InvalidName        a model name, alias, job id, tenant or principal breaks its
    │                      rule (:mod:`producer.contract.names`)
    └── NumberOutOfRange   a number is infinite or NaN as a float64
                           (:mod:`producer.contract.numbers`)
"""

from __future__ import annotations


class ContractError(ValueError):
    """Root of the contract's errors: a value the wire contract does not allow."""
