"""Adapters to Kafka (aiokafka): the producer, readers, dead letters and the gateway's reply router."""
