"""MQTT and Home Assistant (``sht store --mqtt URL``; docs/integrations.md, topics in docs/protocol.md).

- ``options.py``: the flags and the broker URL (no MQTT client import: a store without ``--mqtt`` never loads it);
- ``topics.py``: every topic, named once;
- ``discovery.py``: Home Assistant discovery configs (pure functions);
- ``state.py``: the retained state (motion, counts, settings, nodes) and what changed;
- ``commands.py``: ``.../set`` commands, applied like ``sht settings`` (``by = "mqtt"``);
- ``connection.py``: the broker connection (aiomqtt): last will, reconnects, health;
- ``bridge.py``: ``MqttBridge``, what the store starts: event changes and state changes through the durable outbox
  (store/notify/outbox.py, target ``mqtt``) to the broker, in order.
"""
