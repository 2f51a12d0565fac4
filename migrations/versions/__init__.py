"""Migration scripts, one per schema revision; never edited once released."""
