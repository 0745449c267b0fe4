"""The pure domain core: session lifecycle, billing and settlement rules.

Nothing here does I/O or reads the time; callers pass the current time in.
"""
