"""The operations console: sign-in sessions and the static pages served at /console."""
