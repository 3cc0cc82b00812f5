"""Engines: what runs a side (Docker with an OCI runtime, libvirt with a machine profile,
Vagrant). Each is a part of a side's backend (explorer/backends/), combined there with what
the side starts from and the channel into its guest."""
