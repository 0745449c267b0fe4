"""The PC cafe partner: one adapter interface and its implementations.

Nothing else in the server talks to the partner. `base` defines the interface, `sandbox` is the
in-process partner of the embedded default, `http` the client of a real partner over HTTP.
"""
