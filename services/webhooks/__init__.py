"""Webhooks: signed, retried, dead-lettered deliveries of the event feed (see delivery.py)."""
