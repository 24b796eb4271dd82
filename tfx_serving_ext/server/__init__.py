"""The embedded TF-Serving-compatible model server.

Split like TF Serving: `source` finds versions on disk, `manager` loads / warms up / swaps /
unloads them (availability first), `servable` runs a loaded version's signatures, `core` ties
them to a ModelServerConfig, and `grpc_service` / `rest_service` are the two front ends.
`ModelServer` runs it all in-process; `tfx-serving-ext serve` runs it as a command.
"""

from tfx_serving_ext.server.model_server import InitialModelsUnavailable, ModelServer
from tfx_serving_ext.server.options import ServerOptions

__all__ = ["InitialModelsUnavailable", "ModelServer", "ServerOptions"]
