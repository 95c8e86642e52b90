"""Status: the desired-status model (from translation) and the writer (to the API)."""
