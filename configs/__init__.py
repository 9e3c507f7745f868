"""Built-in presets (YAML). Installed as the package ``dreamcore.presets``; see pyproject.toml."""
