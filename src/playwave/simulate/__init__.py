"""Drive launchers and game servers of many PC cafes against a running PlayWave server.

The simulation runs in simulated time that moves `time_scale` times faster than real time; the
server it talks to must run with its timers divided by the same factor. Every session it starts
is recorded in a truth ledger and checked afterwards against the server's durable records.
"""
