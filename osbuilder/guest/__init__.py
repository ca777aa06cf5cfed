"""The init that runs inside the built system as PID 1.

Standard library only; it runs on the guest's Python and never imports the
rest of osbuilder.
"""
