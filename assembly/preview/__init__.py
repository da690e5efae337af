"""Draft preview: `preview: true` on `/v1/assemble`, and the editors' page `/preview/{template}`."""
