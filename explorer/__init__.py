"""explorer: measure, on your own host, how a container and a virtual machine really differ."""

__version__ = "0.1.0"
