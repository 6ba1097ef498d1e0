"""Training: batches from prepared records, distributed negatives, Ray Train runs."""
