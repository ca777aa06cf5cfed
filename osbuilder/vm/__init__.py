"""Running built systems under QEMU: command line, QMP control, readiness."""
