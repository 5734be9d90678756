"""MLflow: the client and run tracker, HTTP settings, store locks, URLs shown masked."""
