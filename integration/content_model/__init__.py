"""Our content model in a Contentful space: `cli.py model apply` and what it is made of.

`definition` reads `templates/content-model.json`; `diff` compares it with a space (pure);
`client` talks to the Content Management API through the official SDK, under the sync's retry
policy; `service` plans (reads and diffs) and applies (writes, activates) type by type.
"""
