"""Subscriptions: functions triggered by broker messages (docs/connectors.md, "Subscriptions").

A connector of type ``redis``, ``mqtt``, ``amqp`` or ``nats`` may carry ``topicHandlers``; the
Beat leader runs one consumer per enabled handler (:mod:`.supervisor`), one module per broker
kind (:mod:`.mqtt`, :mod:`.amqp`, :mod:`.redispubsub`, :mod:`.nats`), and turns each message
into one task with origin ``subscription`` (:mod:`.pump`).
"""

from __future__ import annotations

from fluxfunc_beat.subscriptions.model import Subscription, TopicHandler, subscriptions_of
from fluxfunc_beat.subscriptions.supervisor import Supervisor

__all__ = ["Subscription", "Supervisor", "TopicHandler", "subscriptions_of"]
