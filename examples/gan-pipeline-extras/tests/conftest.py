# The kit's `register_plugin` fixture (registers a plugin for the length of one test).
pytest_plugins = ["pipeline.testing"]
