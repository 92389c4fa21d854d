"""The worker entry package: consume the intake queue and apply updates."""
