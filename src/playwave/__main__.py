"""`python -m playwave` runs the command line."""

from playwave.cli.main import main

main()
