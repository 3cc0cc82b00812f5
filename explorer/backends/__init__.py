"""Backends: each side's parts, assembled (one small file per side). Which file serves which
side is the registry's business (explorer/sides.py); base.py is the assembled Backend."""
