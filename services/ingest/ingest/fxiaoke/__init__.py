"""Fxiaoke (纷享销客) incremental sync through its OpenAPI (`ingest fxiaoke run|sync`)."""
