"""The test suite: a package, so that its shared helpers import as tests.conftest and tests.servers
under any pytest launcher (`pytest` as well as `python -m pytest`)."""
