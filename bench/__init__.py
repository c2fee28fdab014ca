"""``make bench``: how fast the saga platform is, next to what its transport and a synchronous
HTTP chain manage on the same machine.

``python -m bench`` drives a running stack (``make bench`` starts the ``bench`` profile's):
closed loop, open loop, the transport limit, the synchronous baseline and a payment outage;
it prints a table and writes ``bench/results/<UTC timestamp>.json`` and a plot beside it.
See bench/README.md.
"""
