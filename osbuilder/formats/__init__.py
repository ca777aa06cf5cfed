"""Output writers: one module per output family; formats/catalog.py names them.

A writer takes one build's WriteJob (formats/job.py: the assembled system, the output
directory, the name) and creates its files in the output directory
(outputfile.OutputDirectory: they appear together once the whole build has
succeeded). The boot-media formats and tar-kernel-initrd share the kernel and
initrd staged once per build (formats/staging.py).
"""

# (This module stays empty: importing any module of the package, e.g. the compression that
# bench/build.py's floor times alone, imports it first. The records of the formats are in
# catalog.py, which imports dataclasses.)
