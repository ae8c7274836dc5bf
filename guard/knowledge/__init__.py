"""The store's side of what the policy declares: suppression lists synced or imported."""
