"""Admin operations of the decision engine (kill switches, results, rollouts) and their routes."""
