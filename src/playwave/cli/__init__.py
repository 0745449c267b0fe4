"""The `playwave` command line for operators, studios and developers."""
