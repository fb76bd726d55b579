"""The native local stack: Kafka (KRaft, from Maven Central), PostgreSQL and Redis on loopback."""
