"""The saga explorer: a web page of the order service, at ``/ui``.

``routes`` holds the pages and the one write (replaying a dead letter); ``topic_pages`` the
topics, their messages and the brokers; ``lanes`` lays an order's timeline out as swimlanes;
``peers`` asks the other services about an order; ``templates/`` and ``static/`` are the
page's HTML, script and style, all served from here.
"""
