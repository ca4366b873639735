"""{{ cookiecutter.project_name }}: {{ cookiecutter.description }}"""
import os as _os

# PyTorch's OpenMP threads otherwise spin between operations; on a CPU shared with other work (a
# laptop, a CI runner) the spinning starves the very thread being waited for and makes training
# up to 10x slower (bench/ in the template). Must be set before torch is imported, hence here;
# OMP_WAIT_POLICY=ACTIVE in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
