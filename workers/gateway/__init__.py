"""The gateway: the Open Inference Protocol (V2) over HTTP and gRPC, served through Kafka.

Owns the front door for callers that speak OIP (Triton's and KServe's clients, curl,
load testers): who is calling (:mod:`~workers.gateway.auth`, bearer tokens → tenant),
how much each tenant may ask (:mod:`~workers.gateway.limits`), the REST and gRPC doors
(:mod:`~workers.gateway.rest`, :mod:`~workers.gateway.grpc_door`), one path for every
prediction (:mod:`~workers.gateway.service`): an OIP record in the binary layout
(:mod:`~workers.gateway.records`, the tensors' bytes as they came) on the caller's
tenant's predict topic, answered on a results topic of the gateway's own in that
namespace (:mod:`~workers.gateway.dispatch`), and the status each failure answers
(:mod:`~workers.gateway.errors`). Tensors are read and written by the OIP codec of the
wire contract (:mod:`producer.contract.oip`). Stateless apart from requests in flight:
run as many as the load needs.
"""

from workers.gateway.errors import GatewayError
from workers.gateway.server import Running, Stores, run
from workers.gateway.settings import GatewaySettings, Limits

__all__ = ["GatewayError", "GatewaySettings", "Limits", "Running", "Stores", "run"]
