"""Contentful: sync, the content store and its one guarded writer, the compiled library."""
