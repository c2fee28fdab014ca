"""``sagakit``: the operator's command line over Kafka, the consumer groups, the dead letters
and the local stack, plus the commands a system installs (``plugins.py``).

One module per command group (``topics``, ``records`` for produce and tail, ``groups``,
``dlq``, ``stack``), registered in ``app.py``. Beside them: ``config.py`` finds
the settings, ``kafka.py`` connects, ``group_state.py`` reads a consumer group's state and
commits offsets for it, ``render.py`` shows a record, ``output.py`` prints tables, JSON and
the one-line errors.
"""
