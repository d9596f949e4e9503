"""The shared kernel every service imports: settings, Kafka clients, topics, metrics, health, logs."""
