pytest_plugins = ["evictwatch.testing.fixtures"]
