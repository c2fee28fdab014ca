"""The synchronous baseline, the seed's "before": an order endpoint that calls payment,
inventory and shipping over HTTP, one after the other, and answers once all have answered.

Each of the four is its own process (``python -m bench.syncchain SERVICE --port P``) with
its own database, doing the database work the real service does for a happy saga, with the
real service's store and model functions: the order is inserted, charged (balance locked and
lowered, payment recorded), its stock reserved (rows locked, levels and reservation written),
shipped (shipment recorded), the reserved stock marked shipped, and the order completed.
There is no outbox, no inbox and no timeline: a synchronous chain has none. There are no
compensations either: the benchmark's orders all succeed, and a failed call is answered
with an error, as the seed's chain did. This code is the benchmark's, not the product's.
"""
