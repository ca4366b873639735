"""`python -m hfclf <command> ...` = `hfclf <command> ...`."""
from hfclf.infra.cli import main

main()
