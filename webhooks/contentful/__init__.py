"""Contentful webhooks: verify, classify, apply through the content store, resync."""
