"""Output writers: one module per output family (kernel+initrd, tar, iso, raw, qcow2)."""
