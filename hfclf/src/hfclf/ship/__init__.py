"""ship: model card, MLflow registry, Hub publishing, prediction and the Gradio demo."""
