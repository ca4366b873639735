"""infra: what every phase shares - the command line, tracking (MLflow), rendering, atomic files, errors, compute."""
