"""Root conftest: the session fixtures (infrastructure chosen once) live in eventshop_tools.testing."""

pytest_plugins = ["eventshop_tools.testing"]
