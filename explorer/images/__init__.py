"""Offline builds: a Debian root filesystem, the Docker image made from it, and (for the VM
sides) the kernel, initramfs and disk. Everything is cached by content hash (explorer/cache.py)."""
