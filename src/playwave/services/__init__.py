"""Application services: the use cases that routers, the CLI and background jobs call.

They combine the domain rules with the stores and the partner, and know nothing of HTTP.
"""
