"""Execution backends behind one interface (`base.Backend`)."""
