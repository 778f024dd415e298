"""Default Kafka topic names. Services take the real names from their settings."""

ACTIVITY_TOPIC = "customer-activity.v1"
CLASS_CHANGES_TOPIC = "customer-class-changes.v1"
ACTIVITY_DLQ_TOPIC = "customer-activity.dlq.v1"
