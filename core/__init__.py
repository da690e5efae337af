"""Cross-cutting parts every package may use: settings, errors, Redis, HTTP limits, logging."""
