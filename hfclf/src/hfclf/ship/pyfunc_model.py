"""The MLflow "model from code" entry point: MLflow runs this file to build the pyfunc model when it
is loaded, so nothing is unpickled (register.register logs it, with the library modules it needs
as code_paths)."""
import mlflow

from hfclf.ship.serving import TicketClassifier

mlflow.models.set_model(TicketClassifier())
