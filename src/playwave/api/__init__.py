"""The HTTP API: thin routers over the services, in the documented envelope."""
