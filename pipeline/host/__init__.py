"""The plugin host: the plugin manager, the registry of plugins, choosing one, blaming one."""
