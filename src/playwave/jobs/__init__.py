"""Background jobs: periodic steps that any number of processes may run at once.

Each step leases the work it takes (sorted-set or row leases), and every state change it makes
is conditional in the records, so two workers racing for the same session end it once.
"""
