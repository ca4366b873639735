"""The MLflow "model from code" entry point: MLflow runs this file to build the pyfunc model when it
is loaded, so nothing is unpickled (registry.register logs it with the package as code_paths)."""
import mlflow

from hfclf.ship.register import TicketClassifier

mlflow.models.set_model(TicketClassifier())
