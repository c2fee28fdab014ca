"""Testing a service built on the platform: the handler harness (``harness.py``), which runs
services' handlers on real PostgreSQL and delivers their events in-process. Above every other
floor: it wires declared services as the app does."""
