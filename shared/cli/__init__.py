"""``sagakit``: the operator's command line over Kafka, the consumer groups, the dead letters,
the order API and the local stack.

One module per command group (``topics``, ``records`` for produce and tail, ``groups``,
``dlq``, ``orders``, ``stack``), registered in ``app.py``; ``config.py`` finds the settings,
``kafka.py`` connects, ``output.py`` prints tables, JSON and the one-line errors.
"""
