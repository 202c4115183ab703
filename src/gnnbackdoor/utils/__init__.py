"""Small helpers shared by every part of the package (seeding, progress bars, timing)."""
