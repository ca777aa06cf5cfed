"""Image signatures: which images must be signed, by whom, and where signatures live.

policy.py reads containers-policy.json(5) and finds the requirements for an image;
identity.py decides whether a signature's claimed identity fits the image;
registries.py reads registries.d(5), which says where simple signatures are stored;
payload.py reads a signature's payload, sigstore.py verifies cosign signatures and
simplesign.py OpenPGP simple signatures (with gpgv).
"""
