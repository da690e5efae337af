"""Pure page decisions: the visitor, rules per slot, conflict scores, sequencing, the state
they read and the writes they return."""
