"""The init that runs inside the built system as PID 1.

The boundary, checked by tests/unit/guest/test_boundary.py: these modules (and
osbuilder/__init__.py, which Python runs first) import only the standard library
and osbuilder.guest, since they run on the guest's Python with nothing else of
osbuilder; and what PID 1 reaches at boot imports typing and dataclasses only
under TYPE_CHECKING, and pathlib not at all (fspath has its paths), as their imports
cost boot time under emulation.
"""
