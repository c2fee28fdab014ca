"""PostgreSQL: the engine, the unit of work, the platform's tables and their migrations, and
the statements the hot path runs.
"""
