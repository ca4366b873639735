"""{{ cookiecutter.project_name }}: your own code.

The pipeline itself comes from the `hfclf` library (pinned in pyproject.toml). This package is
the place for what only your project knows, reached from conf/ by dotted path:

- data.py  - custom loading or cleaning of the raw data (conf/data/default.yaml: `loader`, `clean`);
- model.py - a custom model for fine-tuning (conf/model/default.yaml: `builder`).

dvc.yaml lists data.py as a dependency of `prepare` and model.py of `smoke` and `train`, so an
edit re-runs exactly the stages that run it.
"""
