"""Privacy: erasure with a receipt, suppression, access (export)."""
