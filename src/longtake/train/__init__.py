"""Training of the built-in model on StoryWorld (never imported by inference code)."""
