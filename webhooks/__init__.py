"""Every inbound signed webhook: Contentful content changes and Segment events and audiences."""
