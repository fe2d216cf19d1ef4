"""`python -m gateway.cli` = `cunlink` (the daemons' subprocesses use it in tests)."""

from gateway.cli.main import main

main()
