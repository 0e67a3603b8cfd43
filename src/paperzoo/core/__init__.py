"""Infrastructure shared by every method: configs, seeding, run folders, progress, metrics, reports."""
