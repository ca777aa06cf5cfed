"""Built systems in OCI registries: the artifact format, pushing, referrers, pulling.

A stage after formats: it takes the files a build wrote (never reaching back into the
build), and its commands live in osbuilder/commands/systems.py.
"""
