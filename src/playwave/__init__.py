"""PlayWave server: PC cafe benefits for Roblox games, billed per second."""

__version__ = "0.1.0"
