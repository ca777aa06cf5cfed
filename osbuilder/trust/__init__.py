"""Image signatures: policies, identities and their verification."""
