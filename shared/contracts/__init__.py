"""The vocabulary every floor speaks: events and their wire form, topics, upcasters, the
error classes a handler raises, money and request text. Imports nothing else of ``shared``.
"""
