"""Route 1: raw data arrives in S3 → one governed data-preparation run per dataset per batch."""
