"""Integrations with the tools around clew: git, model libraries (flavors), importers."""
