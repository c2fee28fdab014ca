"""The reference system's commands in ``sagakit``, installed through the entry point group
``sagakit.commands`` (``shared.ops.cli.plugins``): ``orders`` (the order API), ``sagas`` and
``bulk`` (bulk actions), and ``dlq groups`` / ``dlq replay-group`` added to the platform's
``dlq`` group (``dlq.py``). All of them go through the order service, which hosts the saga
explorer and its dead-letter index."""
