"""Events arriving at a service: the consumer runner, its partitions, the pipeline one record
or a run of records takes, the inbox, and the failure injection that strikes on that path.
"""
