"""What operators use beside the services: replaying dead letters, the dead-letter index,
consumer lag, and the ``sagakit`` command line (``cli/``).
"""
