"""The record stage: what the pipeline saw becomes history and alerts.

It stores sightings with their snapshots, groups named faces into appearances, stores
each new appearance as an alert and delivers it (Kafka, webhook, MQTT, the web app's
pages), and deletes what is older than the retention. It runs inside ``sauron run``
whether or not the web app does, and over Kafka as ``sauron worker record`` (members of
the consumer group ``<prefix>.store``). The web app only reads what it stored.
"""
