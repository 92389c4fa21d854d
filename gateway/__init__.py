"""The gateway entry package: the legacy HTTP intake and the read endpoints."""
