"""The Segment-compatible tracking API: routes, wire schemas, and the service behind them."""
